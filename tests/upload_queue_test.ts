/**
 * Bounded weight uploads (src/model/upload_queue.ts): writes split into pieces land where
 * they belong, and the weight uploader never has more than `maxBytesInFlight` bytes queued
 * but not executed (each such byte is a staging copy on the host). A fake device records the
 * writes, so no GPU is needed.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { modelDir } from "./helpers/reference.ts";
import { UploadQueue } from "../src/model/upload_queue.ts";
import { uploadWeights } from "../src/model/weights.ts";
import { openModel } from "../src/model/model_source.ts";
import { webgpu } from "../src/runtime/runtime.ts";

interface FakeBuffer {
  label: string;
  size: number;
  bytes: Uint8Array;
  /** Times each byte was written. */
  writes: Uint8Array;
  destroy(): void;
}

/** A queue that copies writes into fake buffers and tracks the bytes queued but not executed. */
class FakeQueue {
  inFlight = 0;
  maxInFlight = 0;
  written = 0;
  #submitted = false;

  writeBuffer(buffer: FakeBuffer, offset: number, data: ArrayBufferView, start = 0, count?: number): void {
    const elem = (data as Uint8Array).BYTES_PER_ELEMENT;
    const n = (count ?? (data as Uint8Array).length - start) * elem;
    assert(offset % 4 === 0 && n % 4 === 0, `unaligned write of ${n} bytes at ${offset}`);
    assert(offset + n <= buffer.size, `write past the end of ${buffer.label}`);
    buffer.bytes.set(new Uint8Array(data.buffer, data.byteOffset + start * elem, n), offset);
    for (let i = offset; i < offset + n; i++) buffer.writes[i]++;
    this.inFlight += n;
    this.written += n;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.#submitted = false;
  }

  submit(buffers: unknown[]): void {
    assertEquals(buffers.length, 0);
    this.#submitted = true;
  }

  onSubmittedWorkDone(): Promise<void> {
    // Only a submit executes queued writes (wgpu keeps them pending until then).
    if (this.#submitted) this.inFlight = 0;
    return Promise.resolve();
  }
}

function fakeDevice(queue: FakeQueue): { device: GPUDevice; buffers: FakeBuffer[] } {
  const buffers: FakeBuffer[] = [];
  const device = {
    queue,
    limits: { maxStorageBufferBindingSize: 1 << 30, maxBufferSize: 1 << 30 },
    createBuffer({ label, size }: GPUBufferDescriptor): FakeBuffer {
      const b = { label: label ?? "", size, bytes: new Uint8Array(size), writes: new Uint8Array(size), destroy() {} };
      buffers.push(b);
      return b;
    },
  };
  return { device: device as unknown as GPUDevice, buffers };
}

test("upload queue: pieces of a write land at their element offsets, never more than the cap queued", async () => {
  const queue = new FakeQueue();
  const { device } = fakeDevice(queue);
  const target = device.createBuffer({ size: 4000, usage: 0 }) as unknown as FakeBuffer;
  const up = new UploadQueue(queue as unknown as GPUQueue, 64);
  const data = Uint16Array.from({ length: 1000 }, (_, i) => i);
  // Elements 100..999 at byte 200: the writer must pass element offsets, not views.
  await up.write(target as unknown as GPUBuffer, 200, data, 100, 900);
  await up.drain();
  assertEquals(Array.from(new Uint16Array(target.bytes.buffer, 200, 900)), Array.from(data.subarray(100)));
  assert(queue.maxInFlight <= 64, `${queue.maxInFlight} bytes queued`);
  assertEquals(queue.inFlight, 0);
});

for (const quantization of ["none", "q8_0"] as const) {
  test(`upload queue: uploading a model (${quantization}) keeps at most maxBytesInFlight queued, every byte written once`, async () => {
    await webgpu(); // GPUBufferUsage (Bun: Dawn's globals)
    const queue = new FakeQueue();
    const { device, buffers } = fakeDevice(queue);
    const { spec, tensors } = await openModel(modelDir("llama-tiny"), { quantization });
    const cap = 16 << 10;
    try {
      // Small chunks and bindings: matrices stream in several batches across several parts.
      const weights = await uploadWeights(device, spec, tensors, {
        maxBytesInFlight: cap,
        chunkBytes: 8 << 10,
        maxBindingBytes: 32 << 10,
      });
      assert(queue.maxInFlight <= cap, `${queue.maxInFlight} bytes queued at once, cap ${cap}`);
      assertEquals(queue.inFlight, 0, "writes left queued after the upload");
      assertEquals(queue.written, weights.bytes);
      for (const b of buffers) {
        assert(b.writes.every((w) => w <= 1), `${b.label}: a byte written twice`);
      }
      assertEquals(weights.layers[0].down!.kind, quantization === "none" ? "dense" : "quant");
    } finally {
      tensors.close();
    }
  });
}
