"""The beam search the overhead benches (metrics, spans, traces) time: one small search on the
embedded model, the same in each so their ratios are comparable."""

BEAM = {
    "tts_strategy": "beam_search",
    "tts_scorer": "entropy",
    "tts_beam_size": 4,
    "tts_candidates_per_step": 2,
    "tts_max_steps": 4,
    "tts_step_max_tokens": 16,
    "max_tokens": 64,
    "temperature": 0.7,
    "seed": 0,
}
QUESTION = [{"role": "user", "content": "What is 17 * 23? Think step by step."}]
