"""What a role may do, read from its own policies (docs/contract.md §11).

``iam:SimulatePrincipalPolicy`` would be the exact answer, but deployers often may not call
it and local AWS endpoints do not implement it; every endpoint serves the role's inline
and attached policies, so the check evaluates those: Allow and Deny statements, ``Action``
/ ``NotAction``, ``Resource`` / ``NotResource`` with ``*`` and ``?`` wildcards, and the
conditions it knows the value of (``iam:PassedToService``). A condition it cannot evaluate
never grants. Permission boundaries, SCPs and resource policies are not read: the message
says so when something is missing.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote


@dataclass(frozen=True)
class Need:
    """One action on one resource, and the request context known for it."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    why: str = ""

    def describe(self) -> str:
        where = "any resource (*)" if self.resource == "*" else self.resource
        return f"{self.action} on {where}"


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _document(raw: Any) -> dict[str, Any]:
    """A policy document as boto3 gives it: a dict, or URL-encoded JSON text."""
    if isinstance(raw, Mapping):
        return dict(raw)
    text = unquote(str(raw))
    return json.loads(text)


def _matches(pattern: str, value: str, *, case_sensitive: bool) -> bool:
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


_STRING_TESTS = {
    "StringEquals": lambda pattern, value: pattern == value,
    "StringLike": lambda pattern, value: fnmatch.fnmatchcase(value, pattern),
    "StringEqualsIgnoreCase": lambda pattern, value: pattern.lower() == value.lower(),
}


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """True only when every test is one we can evaluate and it passes."""
    for operator, tests in condition.items():
        check = _STRING_TESTS.get(operator)
        if check is None or not isinstance(tests, Mapping):
            return False
        for key, expected in tests.items():
            actual = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            if actual is None or not any(check(p, actual) for p in _as_list(expected)):
                return False
    return True


def _statement_applies(statement: Mapping[str, Any], need: Need) -> bool:
    if "Action" in statement:
        actions = _as_list(statement["Action"])
        if not any(_matches(p, need.action, case_sensitive=False) for p in actions):
            return False
    elif "NotAction" in statement:
        if any(
            _matches(p, need.action, case_sensitive=False) for p in _as_list(statement["NotAction"])
        ):
            return False
    else:
        return False
    if "Resource" in statement:
        if not any(
            _matches(p, need.resource, case_sensitive=True) for p in _as_list(statement["Resource"])
        ):
            return False
    elif "NotResource" in statement:
        if any(
            _matches(p, need.resource, case_sensitive=True)
            for p in _as_list(statement["NotResource"])
        ):
            return False
    else:
        return False
    return True


@dataclass
class RolePolicies:
    role_name: str
    statements: list[dict[str, Any]]

    def allows(self, need: Need) -> bool:
        context = dict(need.context)
        allowed = False
        for statement in self.statements:
            if not _statement_applies(statement, need):
                continue
            effect = statement.get("Effect")
            if effect == "Deny":
                # a Deny counts unless its condition is known not to hold
                condition = statement.get("Condition")
                if not condition or _condition_holds(condition, context):
                    return False
            elif effect == "Allow":
                condition = statement.get("Condition")
                if not condition or _condition_holds(condition, context):
                    allowed = True
        return allowed

    def missing(self, needs: Iterable[Need]) -> list[Need]:
        return [need for need in needs if not self.allows(need)]


def role_name_of(role_arn_or_name: str) -> str:
    """``arn:aws:iam::1:role/path/name`` -> ``name``."""
    return role_arn_or_name.rsplit("/", 1)[-1]


def load_role_policies(iam: Any, role: str) -> RolePolicies:
    """Inline and attached managed policies (default versions) of ``role`` (name or ARN).
    Raises the client's NoSuchEntity error when the role does not exist."""
    name = role_name_of(role)
    iam.get_role(RoleName=name)
    statements: list[dict[str, Any]] = []

    def add(document: Any) -> None:
        for statement in _as_list_of_statements(_document(document).get("Statement")):
            statements.append(statement)

    for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
        for policy_name in page["PolicyNames"]:
            add(iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"])
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        for attached in page["AttachedPolicies"]:
            policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
            version = iam.get_policy_version(
                PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"]
            )
            add(version["PolicyVersion"]["Document"])
    return RolePolicies(name, statements)


def _as_list_of_statements(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [dict(value)]
    return [dict(item) for item in value]


def policy_statements_for(missing: Iterable[Need]) -> list[dict[str, Any]]:
    """The statements that would grant ``missing``, grouped by resource and context."""
    grouped: dict[tuple[str, tuple[tuple[str, str], ...]], list[str]] = {}
    for need in missing:
        grouped.setdefault((need.resource, need.context), []).append(need.action)
    statements = []
    for (resource, context), actions in grouped.items():
        statement: dict[str, Any] = {
            "Effect": "Allow",
            "Action": sorted(set(actions)),
            "Resource": resource,
        }
        if context:
            statement["Condition"] = {"StringEquals": dict(context)}
        statements.append(statement)
    return statements
