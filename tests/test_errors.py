"""sda.errors: the one table of what can go wrong, and the kind each error is reported as."""

import inspect

import pytest

from sda import errors


def defined_classes():
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]


def test_the_table_in_the_docstring_names_every_class():
    table = errors.__doc__.split("The table")[1]
    for cls in defined_classes():
        assert f" {cls.__name__} " in table, f"{cls.__name__} is missing from the table of sda.errors"


@pytest.mark.parametrize("cls", defined_classes(), ids=lambda c: c.__name__)
def test_every_class_has_a_kind_and_an_exit_status(cls):
    kind = errors.kind_of(cls("message"))
    assert kind in errors.KINDS
    user = issubclass(cls, errors.SdaUserError)
    assert (kind in errors.USER_KINDS) == user and errors.EXIT[kind] == (2 if user else 1)
    assert issubclass(cls, ValueError) == user  # a user error prints as it is; a programming ValueError does not


def test_a_failed_save_is_not_bad_input_and_a_bug_has_no_kind():
    assert errors.kind_of(errors.SaveError("could not save")) == "save" and errors.EXIT["save"] == 1
    assert errors.kind_of(ValueError("a bug")) is None and errors.EXIT[None] == 1
