/**
 * deploy/k8s: `kubectl kustomize` renders each overlay; every object validates offline
 * against its schema; and what the manifests assume about the server (flags, port, probe
 * paths, metric names, the shutdown deadline) is what serve.ts really does.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { run } from "./helpers/platform.ts";
import { testServer } from "./helpers/server.ts";
import { type K8sObject, validateObject, validators } from "./helpers/k8s_schema.ts";
import { parseAllDocuments } from "yaml";
import { API_KEY_ENV, parseServeArgs } from "../src/server/args.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const OVERLAYS = ["cpu", "nvidia"] as const;
const KINDS = ["Deployment", "Service", "PodDisruptionBudget", "ScaledObject", "PodMonitor", "InferencePool"];

async function render(overlay: string): Promise<K8sObject[]> {
  const out = await run("kubectl", ["kustomize", `${ROOT}deploy/k8s/overlays/${overlay}`]);
  assertEquals(out.code, 0, `kubectl kustomize ${overlay}: ${out.stderr}`);
  return parseAllDocuments(out.stdout).map((d) => d.toJSON() as K8sObject).filter(Boolean);
}

function one(objs: K8sObject[], kind: string): K8sObject {
  const found = objs.filter((o) => o.kind === kind);
  assertEquals(found.length, 1, `${kind} objects`);
  return found[0];
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

test("k8s: every overlay renders with kubectl kustomize and every object validates against its schema", async () => {
  const table = await validators();
  for (const overlay of OVERLAYS) {
    const objs = await render(overlay);
    assertEquals(objs.map((o) => o.kind).sort(), [...KINDS].sort(), overlay);
    for (const o of objs) {
      try {
        validateObject(table, o);
      } catch (e) {
        throw new Error(`${overlay}: ${o.kind} ${o.metadata.name}: ${(e as Error).message}`);
      }
    }
  }
  // The schemas do catch mistakes (a port as a string, a missing required field).
  const objs = await render("cpu");
  const bad = structuredClone(one(objs, "Deployment"));
  bad.spec.template.spec.containers[0].ports[0].containerPort = "8000";
  let threw = false;
  try {
    validateObject(table, bad);
  } catch {
    threw = true;
  }
  assert(threw, "a string containerPort passed validation");
  const pool = structuredClone(one(objs, "InferencePool"));
  delete pool.spec.targetPorts;
  threw = false;
  try {
    validateObject(table, pool);
  } catch {
    threw = true;
  }
  assert(threw, "an InferencePool without targetPorts passed validation");
});

test("k8s: flags, port, probes, metric names and the grace period agree with serve.ts", async () => {
  for (const overlay of OVERLAYS) {
    const objs = await render(overlay);
    const deploy = one(objs, "Deployment");
    const pod = deploy.spec.template;
    const podLabels: Record<string, string> = pod.metadata.labels;
    const c = pod.spec.containers[0];
    // The container's flags parse as serve.ts parses them.
    const opts = parseServeArgs(c.args, () => undefined)!;
    assertEquals(opts.host, "0.0.0.0", `${overlay}: listen on all interfaces in a pod`);
    const http = c.ports.find((p: { name: string }) => p.name === "http");
    assertEquals(http.containerPort, opts.port, `${overlay}: containerPort vs --port`);
    // The kubelet's SIGKILL comes after serve.ts's own hard deadline (drain delay included).
    assert(pod.spec.terminationGracePeriodSeconds * 1000 > opts.shutdownTimeoutMs, `${overlay}: grace period not above --shutdown-timeout`);
    assert((opts.drainDelayMs ?? 0) > 0 && opts.drainDelayMs! < opts.shutdownTimeoutMs, `${overlay}: drain delay`);
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      assertEquals(c[probe].httpGet.path, "/health", `${overlay}: ${probe}`);
      assertEquals(c[probe].httpGet.port, "http", `${overlay}: ${probe} port`);
    }
    const key = c.env.find((e: { name: string }) => e.name === API_KEY_ENV);
    assertEquals(key?.valueFrom?.secretKeyRef?.optional, true, `${overlay}: API key from an optional Secret`);
    assert(c.volumeMounts.some((m: { mountPath: string }) => m.mountPath === c.env.find((e: { name: string }) => e.name === "HF_HOME").value), "HF_HOME on the cache volume");
    if (overlay === "nvidia") assertEquals(c.resources.limits["nvidia.com/gpu"], "1");
    else assert(!("nvidia.com/gpu" in (c.resources.limits ?? {})), "cpu overlay asks for a GPU");

    const svc = one(objs, "Service");
    assert(matches(svc.spec.selector, podLabels), `${overlay}: Service selects the pods`);
    assertEquals(svc.spec.ports[0].targetPort, "http");
    for (const kind of ["PodDisruptionBudget", "PodMonitor", "InferencePool"]) {
      assert(matches(one(objs, kind).spec.selector.matchLabels, podLabels), `${overlay}: ${kind} selects the pods`);
    }
    assertEquals(one(objs, "InferencePool").spec.targetPorts[0].number, opts.port);
    const monitor = one(objs, "PodMonitor").spec.podMetricsEndpoints[0];
    assertEquals(monitor.port, "http");
    const scaled = one(objs, "ScaledObject").spec;
    assertEquals(scaled.scaleTargetRef.name, deploy.metadata.name);

    // Against a live server with the Deployment's model name: the probe path and the metrics
    // path answer, and every metric the autoscaler queries exists with that model_name.
    const s = await testServer("stories260K", { servedModelName: opts.servedModelName });
    try {
      assertEquals((await (await fetch(`${s.base}${c.readinessProbe.httpGet.path}`)).json()).status, "ok");
      const metrics = await (await fetch(`${s.base}${monitor.path}`)).text();
      for (const trigger of scaled.triggers) {
        const query: string = trigger.metadata.query;
        const selectors = [...query.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}/g)];
        assert(selectors.length > 0, `no metric in ${query}`);
        for (const [, name, labels] of selectors) {
          const series = metrics.split("\n").filter((l) => l.startsWith(`${name}{`));
          assert(series.length > 0, `${overlay}: ${name} (ScaledObject query) is not in /metrics`);
          for (const [, k, v] of labels.matchAll(/([a-z_]+)="([^"]*)"/g)) {
            assert(series.some((l) => l.includes(`${k}="${v}"`)), `${overlay}: no ${name} with ${k}="${v}"`);
          }
        }
      }
    } finally {
      await s.close();
    }
  }
});
