// Shared by every kernel: the step metadata binding and weight unpacking.
// Step metadata is one flat u32 array per in-flight step, bound with a dynamic offset, so
// bind groups are built once and a step only writes its own slot.
// Header words: 0 tokens, 1 seqs, 2 logit rows, 3 block-table row length,
// 4..11 offsets (in words, from the slot start) of the per-step arrays (token ids, positions,
// slots, token->seq, block tables, logit rows, context lengths, query starts),
// 12 offset of the per-logit-row sampling parameters, 13 first output record of this step
// in the sampler's output ring.
@group(0) @binding(0) var<storage, read> step: array<u32>;

fn num_tokens() -> u32 { return step[0]; }
fn num_seqs() -> u32 { return step[1]; }
fn num_logit_rows() -> u32 { return step[2]; }
fn block_table_len() -> u32 { return step[3]; }
fn token_id(t: u32) -> u32 { return step[step[4] + t]; }
fn token_pos(t: u32) -> u32 { return step[step[5] + t]; }
fn token_slot(t: u32) -> u32 { return step[step[6] + t]; }
fn token_seq(t: u32) -> u32 { return step[step[7] + t]; }
fn block_of(seq: u32, j: u32) -> u32 { return step[step[8] + seq * step[3] + j]; }
fn logit_row_token(r: u32) -> u32 { return step[step[9] + r]; }
fn sampling_params_base() -> u32 { return step[12]; }
fn output_record_base() -> u32 { return step[13]; }
// Rows a kernel works on: 0 = tokens, 1 = logit rows.
fn rows_of(kind: u32) -> u32 { return select(step[0], step[2], kind == 1u); }

const NO_SLOT: u32 = 0xffffffffu;
