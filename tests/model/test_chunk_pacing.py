"""The chunk budget follows the measured step and prefill times: faster steps make smaller chunks."""

from model.chunk_pacing import MIN_CHUNK_TOKENS, ChunkPacing


def test_the_token_setting_binds_until_steps_are_measured_then_a_small_chunk_measures_prefill() -> None:
    pacing = ChunkPacing(256)
    assert pacing.budget() == 256
    pacing.ticked(0.020)
    assert pacing.budget() == 2 * MIN_CHUNK_TOKENS


def test_a_chunk_takes_about_one_and_a_half_ticks_and_shrinks_as_steps_get_faster() -> None:
    pacing = ChunkPacing(256)
    pacing.ticked(0.020)
    pacing.read(32, 0.032)  # 1 ms a prompt token
    assert pacing.budget() == 30  # 1.5 ticks of 20 ms
    for _ in range(40):
        pacing.ticked(0.010)
    assert pacing.budget() == MIN_CHUNK_TOKENS  # 15 would fit: the floor
    assert pacing.took_a_slot(0.016) and not pacing.took_a_slot(0.014)


def test_where_prompt_tokens_are_cheap_the_token_setting_binds() -> None:
    pacing = ChunkPacing(256)
    pacing.ticked(0.020)
    pacing.read(256, 0.010)  # a GPU: hundreds of tokens in half a step
    assert pacing.budget() == 256
    pacing.read(4, 10.0)  # a few tokens say nothing about the rate
    assert pacing.budget() == 256
