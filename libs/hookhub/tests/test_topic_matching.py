"""Topic patterns are matched word by word as RabbitMQ matches them, in time proportional to
the pattern times the routing key, whatever the pattern."""

from hookhub.topology import binding_matches
from hypothesis import given, settings
from hypothesis import strategies as st


def recursive_reference(binding_key: str, routing_key: str) -> bool:
    """The matcher as it was (exponential in `#`): the semantics to keep."""

    def match(pattern: list[str], words: list[str]) -> bool:
        if not pattern:
            return not words
        head, rest = pattern[0], pattern[1:]
        if head == "#":
            return any(match(rest, words[skip:]) for skip in range(len(words) + 1))
        return bool(words) and head in ("*", words[0]) and match(rest, words[1:])

    return match(binding_key.split("."), routing_key.split("."))


WORDS = st.sampled_from(["a", "b", "c", ""])
KEYS = st.lists(WORDS, min_size=1, max_size=7).map(".".join)
PATTERNS = st.lists(st.one_of(WORDS, st.just("*"), st.just("#")), min_size=1, max_size=7).map(
    ".".join
)


@settings(max_examples=3000, deadline=None)
@given(PATTERNS, KEYS)
def test_the_matcher_agrees_with_the_recursive_one_on_every_pattern(pattern, key):
    assert binding_matches(pattern, key) is recursive_reference(pattern, key)


def test_nine_hundred_hashes_against_a_long_key_neither_recurse_nor_match_wrongly():
    routing_key = ".".join(["w"] * 127)

    assert not binding_matches("#.#.#.#.nomatch", routing_key)  # seconds, recursively
    assert not binding_matches(".".join(["#"] * 900) + ".nomatch", routing_key)  # was a 500
    assert binding_matches(".".join(["#"] * 900), routing_key)
