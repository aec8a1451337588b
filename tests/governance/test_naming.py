"""Names and references: what is accepted and, as important, what is not."""

from __future__ import annotations

import pytest

from nexml_ext.errors import InvalidInput
from nexml_ext.governance.naming import check_name, parse_ref


@pytest.mark.parametrize("name", ["credit-risk", "a", "A.b_c-9", "x" * 64])
def test_valid_names_pass(name):
    assert check_name("model", name) == name


@pytest.mark.parametrize(
    "name", ["", "-lead", "a b", "abc\n", "x" * 65, "naïve", "a/b", "a:b", "a\x00"]
)
def test_invalid_names_are_refused_by_name(name):
    with pytest.raises(InvalidInput, match="invalid model name"):
        check_name("model", name)


def test_references_split_into_name_and_version():
    assert parse_ref("credit-risk:12") == ("credit-risk", 12)


@pytest.mark.parametrize(
    "ref", ["credit-risk", "credit-risk:0", "credit-risk:-1", "m:1\n", "m\n:1", "m:²", "m:1:2", ":1"]
)
def test_malformed_references_are_refused(ref):
    with pytest.raises(InvalidInput, match="malformed model reference"):
        parse_ref(ref)
