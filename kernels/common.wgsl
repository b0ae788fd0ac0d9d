// Shared by every kernel: the step metadata binding and its accessors. Step metadata is one
// flat u32 array per in-flight step, bound with a dynamic offset, so bind groups are built
// once and a step only writes its own slot. The header's word indices (STEP_*) and the other
// layout constants come from src/kernels/layout.ts through the generated include `layout`.
#include layout
@group(0) @binding(0) var<storage, read> step: array<u32>;

fn num_tokens() -> u32 { return step[STEP_NUM_TOKENS]; }
fn num_seqs() -> u32 { return step[STEP_NUM_SEQS]; }
fn num_logit_rows() -> u32 { return step[STEP_NUM_LOGIT_ROWS]; }
fn block_table_len() -> u32 { return step[STEP_BLOCK_TABLE_LEN]; }
fn token_id(t: u32) -> u32 { return step[step[STEP_TOKEN_IDS] + t]; }
fn token_pos(t: u32) -> u32 { return step[step[STEP_POSITIONS] + t]; }
fn token_slot(t: u32) -> u32 { return step[step[STEP_SLOTS] + t]; }
fn token_seq(t: u32) -> u32 { return step[step[STEP_TOKEN_SEQ] + t]; }
fn block_of(seq: u32, j: u32) -> u32 { return step[step[STEP_BLOCK_TABLES] + seq * block_table_len() + j]; }
fn logit_row_token(r: u32) -> u32 { return step[step[STEP_LOGIT_ROWS] + r]; }
fn sampling_word(r: u32, field: u32) -> u32 { return step[step[STEP_SAMPLING_PARAMS] + r * ROW_WORDS + field]; }
fn output_record_base() -> u32 { return step[STEP_RECORD_BASE]; }
fn num_pool_rows() -> u32 { return step[STEP_NUM_POOL_ROWS]; }
// Pooled row r sums the final hidden states of `count` tokens from token `first`.
fn pool_first(r: u32) -> u32 { return step[step[STEP_POOL_RANGES] + 2u * r]; }
fn pool_count(r: u32) -> u32 { return step[step[STEP_POOL_RANGES] + 2u * r + 1u]; }
// Rows a kernel works on: 0 = tokens, 1 = logit rows.
fn rows_of(kind: u32) -> u32 { return select(num_tokens(), num_logit_rows(), kind == 1u); }
// Ragged sequences of the step: first token of sequence s (s = num_seqs() gives the end),
// and its context length (tokens in cache) after the step.
fn query_start(s: u32) -> u32 { return step[step[STEP_QUERY_START] + s]; }
fn context_len(s: u32) -> u32 { return step[step[STEP_CONTEXT_LENS] + s]; }
// Recurrent-state slot of sequence s (hybrid models' linear-attention layers).
fn state_slot(s: u32) -> u32 { return step[step[STEP_STATE_SLOTS] + s]; }
// MTP draft steps: where token t's hidden-state input row is (kernels/mtp_input.wgsl).
fn hidden_src(t: u32) -> u32 { return step[step[STEP_HIDDEN_SRC] + t]; }
