"""A small Amazon States Language interpreter for the contract tests.

It runs exactly the features the two definitions in ``aws/step_functions/`` use — Task,
Parallel, Map (inline), Choice, Pass, Succeed, Fail (Error/Cause or ErrorPath/CausePath);
InputPath, Parameters / ItemSelector with ``.$`` and the context object ``$$``,
ResultSelector, ResultPath, OutputPath; Retry and Catch with ``States.ALL`` / ``States.TaskFailed``; the intrinsics States.Format,
States.StringToJson, States.JsonToString, States.JsonMerge and States.Array — and refuses
anything else, so a definition cannot silently use a feature the tests never exercised.

Resources map to Python callables. A Lambda resource is called like the Python Lambda
runtime calls a handler: JSON in, JSON out, and an exception becomes an error whose
``Error`` is the exception's class name and whose ``Cause`` is the runtime's JSON
(errorMessage, errorType, requestId, stackTrace); a resource standing for a service
integration may raise ``StatesError`` to fail with that service's own error name
(``MediaConvert.ForbiddenException``). Every step is recorded in ``history``.
"""

from __future__ import annotations

import copy
import json
import re
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Handler = Callable[[Any, Any], Any]

SUPPORTED_TYPES = {"Task", "Parallel", "Map", "Choice", "Pass", "Succeed", "Fail"}
ACCOUNT = "123456789012"
REGION = "us-east-1"


class StatesError(Exception):
    """An error as Step Functions sees it: a name and a cause string."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


class DefinitionError(Exception):
    """The definition uses something this interpreter (and so the tests) do not cover."""


@dataclass(frozen=True)
class LambdaContext:
    """The attributes handlers read from the Lambda context object."""

    function_name: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass
class Execution:
    arn: str
    name: str
    input: Any
    start_time: str = ""
    status: str = "RUNNING"
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def states_entered(self) -> list[str]:
        return [e["state"] for e in self.history if e["type"] == "StateEntered"]

    def events(self, event_type: str, state: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.history
            if e["type"] == event_type and (state is None or e.get("state") == state)
        ]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_copy(value: Any) -> Any:
    """What a value looks like after crossing a service boundary as JSON."""
    return json.loads(json.dumps(value))


# ---------------------------------------------------------------- paths


_PATH_TOKEN = re.compile(r"\.([A-Za-z0-9_@\-]+)|\[(\d+)\]|\['([^']*)'\]")


def _path_steps(path: str) -> list[str | int]:
    if path.startswith("$$"):
        rest = path[2:]
    elif path.startswith("$"):
        rest = path[1:]
    else:
        raise DefinitionError(f"not a path: {path!r}")
    steps: list[str | int] = []
    position = 0
    while position < len(rest):
        match = _PATH_TOKEN.match(rest, position)
        if match is None:
            raise DefinitionError(f"unsupported path syntax: {path!r}")
        name, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (name if name is not None else quoted))
        position = match.end()
    return steps


def read_path(path: str, data: Any, context: Any) -> Any:
    """Resolve a reference path; a missing member is States.Runtime (uncatchable)."""
    current = context if path.startswith("$$") else data
    for step in _path_steps(path):
        try:
            current = current[step]
        except (KeyError, IndexError, TypeError):
            raise StatesError(
                "States.Runtime", f"The JSONPath '{path}' could not be found in the input"
            ) from None
    return current


def path_exists(path: str, data: Any, context: Any) -> bool:
    try:
        read_path(path, data, context)
    except StatesError:
        return False
    return True


def write_path(path: str | None, target: Any, value: Any) -> Any:
    """ResultPath semantics: null discards the result, ``$`` replaces the input."""
    if path is None:
        return target
    steps = _path_steps(path)
    if not steps:
        return value
    result = copy.deepcopy(target)
    if not isinstance(result, dict):
        raise StatesError("States.Runtime", f"cannot apply ResultPath {path!r} to a non-object")
    current = result
    for step in steps[:-1]:
        if not isinstance(step, str):
            raise DefinitionError(f"ResultPath with an index is not supported: {path!r}")
        current = current.setdefault(step, {})
        if not isinstance(current, dict):
            raise StatesError("States.Runtime", f"ResultPath {path!r} crosses a non-object")
    last = steps[-1]
    if not isinstance(last, str):
        raise DefinitionError(f"ResultPath with an index is not supported: {path!r}")
    current[last] = value
    return result


# ---------------------------------------------------------------- intrinsic functions


class _IntrinsicParser:
    """``States.Name(arg, ...)`` where an arg is a 'string', a number, a path or a call."""

    def __init__(self, text: str, data: Any, context: Any) -> None:
        self.text = text
        self.pos = 0
        self.data = data
        self.context = context

    def parse(self) -> Any:
        value = self._call()
        self._space()
        if self.pos != len(self.text):
            raise DefinitionError(f"trailing text in intrinsic: {self.text!r}")
        return value

    def _space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def _call(self) -> Any:
        self._space()
        match = re.compile(r"States\.[A-Za-z]+").match(self.text, self.pos)
        if match is None:
            raise DefinitionError(f"not an intrinsic function: {self.text!r}")
        name = match.group()
        self.pos = match.end()
        self._expect("(")
        args: list[Any] = []
        self._space()
        if self._peek() != ")":
            while True:
                args.append(self._argument())
                self._space()
                if self._peek() == ",":
                    self.pos += 1
                    continue
                break
        self._expect(")")
        return INTRINSICS.get(name, _unsupported(name))(*args)

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _expect(self, char: str) -> None:
        self._space()
        if self._peek() != char:
            raise DefinitionError(f"expected {char!r} at {self.pos} in {self.text!r}")
        self.pos += 1

    def _argument(self) -> Any:
        self._space()
        char = self._peek()
        if char == "'":
            return self._string()
        if char == "$":
            match = re.compile(r"\$\$?[^,)\s]*").match(self.text, self.pos)
            assert match is not None
            self.pos = match.end()
            return read_path(match.group(), self.data, self.context)
        if self.text.startswith("States.", self.pos):
            return self._call()
        match = re.compile(r"-?\d+(\.\d+)?|true|false|null").match(self.text, self.pos)
        if match is None:
            raise DefinitionError(f"bad intrinsic argument at {self.pos} in {self.text!r}")
        self.pos = match.end()
        return json.loads(match.group())

    def _string(self) -> str:
        self.pos += 1
        out = []
        while True:
            char = self._peek()
            if not char:
                raise DefinitionError(f"unterminated string in {self.text!r}")
            self.pos += 1
            if char == "\\":
                out.append(self._peek())
                self.pos += 1
            elif char == "'":
                return "".join(out)
            else:
                out.append(char)


def _unsupported(name: str) -> Callable[..., Any]:
    def fail(*_: Any) -> Any:
        raise DefinitionError(f"intrinsic {name} is not supported by the test interpreter")

    return fail


def _format_argument(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return json.dumps(value)
    raise StatesError("States.IntrinsicFailure", "States.Format takes strings, numbers, bools")


def _states_format(template: str, *args: Any) -> str:
    pieces = template.split("{}")
    if len(pieces) - 1 != len(args):
        raise StatesError("States.IntrinsicFailure", "States.Format: placeholder count mismatch")
    out = [pieces[0]]
    for arg, piece in zip(args, pieces[1:], strict=True):
        out.extend((_format_argument(arg), piece))
    return "".join(out)


def _json_merge(first: Any, second: Any, deep: bool) -> Any:
    if deep:
        raise DefinitionError("States.JsonMerge deep mode is not supported (nor by AWS)")
    if not isinstance(first, dict) or not isinstance(second, dict):
        raise StatesError("States.IntrinsicFailure", "States.JsonMerge takes two objects")
    return {**first, **second}


def _string_to_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StatesError("States.IntrinsicFailure", f"States.StringToJson: {exc}") from None


INTRINSICS: dict[str, Callable[..., Any]] = {
    "States.Format": _states_format,
    "States.StringToJson": _string_to_json,
    "States.JsonToString": lambda value: json.dumps(value, separators=(",", ":")),
    "States.JsonMerge": _json_merge,
    "States.Array": lambda *values: list(values),
}


def evaluate_template(template: Any, data: Any, context: Any) -> Any:
    """Parameters / ItemSelector / ResultSelector: ``key.$`` members are evaluated."""
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                if not isinstance(value, str):
                    raise DefinitionError(f"{key} must be a string path or intrinsic")
                if value.startswith("States."):
                    out[key[:-2]] = _IntrinsicParser(value, data, context).parse()
                else:
                    out[key[:-2]] = copy.deepcopy(read_path(value, data, context))
            else:
                out[key] = evaluate_template(value, data, context)
        return out
    if isinstance(template, list):
        return [evaluate_template(item, data, context) for item in template]
    return copy.deepcopy(template)


# ---------------------------------------------------------------- choice rules

_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "BooleanEquals": lambda v, x: isinstance(v, bool) and v == x,
    "StringEquals": lambda v, x: isinstance(v, str) and v == x,
    "NumericEquals": lambda v, x: isinstance(v, int | float) and not isinstance(v, bool) and v == x,
    "IsNull": lambda v, x: (v is None) == x,
    "IsBoolean": lambda v, x: isinstance(v, bool) == x,
    "IsString": lambda v, x: isinstance(v, str) == x,
}


def choice_matches(rule: Mapping[str, Any], data: Any, context: Any) -> bool:
    if "And" in rule:
        return all(choice_matches(r, data, context) for r in rule["And"])
    if "Or" in rule:
        return any(choice_matches(r, data, context) for r in rule["Or"])
    if "Not" in rule:
        return not choice_matches(rule["Not"], data, context)
    variable = rule["Variable"]
    if "IsPresent" in rule:
        return path_exists(variable, data, context) == rule["IsPresent"]
    for name, compare in _COMPARATORS.items():
        if name in rule:
            return compare(read_path(variable, data, context), rule[name])
    raise DefinitionError(f"unsupported choice rule: {sorted(rule)}")


# ---------------------------------------------------------------- definition checks


def _check_states(states: Mapping[str, Any], start_at: str, seen: set[str]) -> None:
    if start_at not in states:
        raise DefinitionError(f"StartAt {start_at!r} is not a state")
    for name, state in states.items():
        if name in seen:
            raise DefinitionError(f"state name {name!r} is used twice")
        seen.add(name)
        kind = state.get("Type")
        if kind not in SUPPORTED_TYPES:
            raise DefinitionError(f"{name}: unsupported state type {kind!r}")
        targets = []
        if kind in {"Task", "Parallel", "Map", "Pass"}:
            if state.get("End") is True:
                if "Next" in state:
                    raise DefinitionError(f"{name}: both End and Next")
            elif "Next" in state:
                targets.append(state["Next"])
            else:
                raise DefinitionError(f"{name}: neither End nor Next")
        if kind == "Choice":
            targets += [choice["Next"] for choice in state["Choices"]]
            if "Default" in state:
                targets.append(state["Default"])
        for retrier in state.get("Retry", []):
            if "States.ALL" in retrier["ErrorEquals"] and (
                len(retrier["ErrorEquals"]) != 1 or retrier is not state["Retry"][-1]
            ):
                raise DefinitionError(f"{name}: States.ALL must be alone in the last retrier")
        for catcher in state.get("Catch", []):
            targets.append(catcher["Next"])
        for target in targets:
            if target not in states:
                raise DefinitionError(f"{name}: Next {target!r} is not a state of its scope")
        if kind == "Parallel":
            for branch in state["Branches"]:
                _check_states(branch["States"], branch["StartAt"], seen)
        if kind == "Map":
            processor = state["ItemProcessor"]
            if processor.get("ProcessorConfig", {}).get("Mode", "INLINE") != "INLINE":
                raise DefinitionError(f"{name}: only INLINE maps are supported")
            _check_states(processor["States"], processor["StartAt"], seen)


def check_definition(definition: Mapping[str, Any]) -> None:
    """Structural checks: known state types, every Next inside its scope, unique names,
    States.ALL alone and last in Retry."""
    _check_states(definition["States"], definition["StartAt"], set())


# ---------------------------------------------------------------- the interpreter


def _error_matches(names: list[str], error: str) -> bool:
    if error == "States.Runtime":
        return False  # never retried, never caught
    for name in names:
        if name == error or name == "States.ALL":
            return True
        if name == "States.TaskFailed" and error != "States.Timeout":
            return True
    return False


class StateMachine:
    def __init__(
        self,
        definition: Mapping[str, Any],
        resources: Mapping[str, Handler],
        *,
        name: str = "test-state-machine",
        retry_interval_scale: float = 0.0,
    ) -> None:
        """``resources`` maps each Task ``Resource`` string (placeholders included) to a
        handler. ``retry_interval_scale`` multiplies every retry wait (0 = no sleeping);
        the history records the nominal wait."""
        check_definition(definition)
        self.definition = definition
        self.resources = dict(resources)
        self.name = name
        self.arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        self.retry_interval_scale = retry_interval_scale

    def start_execution(self, execution_input: Any, *, name: str | None = None) -> Execution:
        """Run to completion (synchronously) and return the execution."""
        name = name or str(uuid.uuid4())
        started = datetime.now(UTC)
        execution = Execution(
            arn=f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{self.name}:{name}",
            name=name,
            input=_json_copy(execution_input),
            start_time=_iso(started),
        )
        context = {
            "Execution": {
                "Id": execution.arn,
                "Name": name,
                "StartTime": execution.start_time,
                "Input": execution.input,
                "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/test-states-role",
            },
            "StateMachine": {"Id": self.arn, "Name": self.name},
        }
        self._record(execution, "ExecutionStarted", input=execution.input)
        try:
            output = self._run_states(self.definition, execution.input, context, execution)
        except StatesError as failure:
            execution.status = "FAILED"
            execution.error, execution.cause = failure.error, failure.cause
            self._record(execution, "ExecutionFailed", error=failure.error, cause=failure.cause)
        else:
            execution.status = "SUCCEEDED"
            execution.output = output
            self._record(execution, "ExecutionSucceeded", output=output)
        return execution

    # -- internals

    @staticmethod
    def _record(execution: Execution, event_type: str, **detail: Any) -> None:
        execution.history.append({"type": event_type, **detail})

    def _run_states(
        self, scope: Mapping[str, Any], data: Any, context: dict[str, Any], execution: Execution
    ) -> Any:
        states = scope["States"]
        current = scope["StartAt"]
        while True:
            state = states[current]
            state_context = {
                **context,
                "State": {"Name": current, "EnteredTime": _iso(datetime.now(UTC))},
            }
            self._record(execution, "StateEntered", state=current, input=data)
            try:
                data, next_state = self._run_state(current, state, data, state_context, execution)
            except StatesError as failure:
                catcher = next(
                    (
                        c
                        for c in state.get("Catch", [])
                        if _error_matches(c["ErrorEquals"], failure.error)
                    ),
                    None,
                )
                if catcher is None:
                    self._record(execution, "StateFailed", state=current, error=failure.error)
                    raise
                error_output = {"Error": failure.error, "Cause": failure.cause}
                data = write_path(catcher.get("ResultPath", "$"), data, error_output)
                self._record(
                    execution,
                    "CatchTriggered",
                    state=current,
                    error=failure.error,
                    next=catcher["Next"],
                )
                current = catcher["Next"]
                continue
            self._record(execution, "StateExited", state=current, output=data)
            if next_state is None:
                return data
            current = next_state

    def _run_state(
        self,
        name: str,
        state: Mapping[str, Any],
        data: Any,
        context: dict[str, Any],
        execution: Execution,
    ) -> tuple[Any, str | None]:
        kind = state["Type"]
        if kind == "Fail":
            # ErrorPath / CausePath re-raise what a Catch stored (a reference path only).
            error = (
                read_path(state["ErrorPath"], data, context)
                if "ErrorPath" in state
                else state.get("Error", "States.Fail")
            )
            cause = (
                read_path(state["CausePath"], data, context)
                if "CausePath" in state
                else state.get("Cause", "")
            )
            if not isinstance(error, str) or not isinstance(cause, str):
                raise StatesError("States.Runtime", f"{name}: ErrorPath/CausePath must be strings")
            raise StatesError(error, cause)
        effective = read_path(state.get("InputPath", "$"), data, context)
        if kind == "Succeed":
            return read_path(state.get("OutputPath", "$"), effective, context), None
        if kind == "Choice":
            for rule in state["Choices"]:
                if choice_matches(rule, effective, context):
                    return read_path(state.get("OutputPath", "$"), effective, context), rule["Next"]
            if "Default" not in state:
                raise StatesError("States.NoChoiceMatched", f"no choice matched in {name}")
            return read_path(state.get("OutputPath", "$"), effective, context), state["Default"]

        if kind == "Map":
            result = self._run_map(name, state, effective, context, execution)
        else:
            if "Parameters" in state:
                effective = evaluate_template(state["Parameters"], effective, context)
            if kind == "Pass":
                result = copy.deepcopy(state["Result"]) if "Result" in state else effective
            elif kind == "Task":
                result = self._run_task_with_retry(name, state, effective, context, execution)
            elif kind == "Parallel":
                result = self._with_retry(
                    name,
                    state,
                    execution,
                    lambda: [
                        self._run_states(branch, effective, context, execution)
                        for branch in state["Branches"]
                    ],
                )
            else:  # pragma: no cover - check_definition refuses other types
                raise DefinitionError(kind)
        if "ResultSelector" in state:
            result = evaluate_template(state["ResultSelector"], result, context)
        output = write_path(state.get("ResultPath", "$"), data, result)
        output = read_path(state.get("OutputPath", "$"), output, context)
        return output, None if state.get("End") else state["Next"]

    def _run_map(
        self,
        name: str,
        state: Mapping[str, Any],
        effective: Any,
        context: dict[str, Any],
        execution: Execution,
    ) -> list[Any]:
        items = read_path(state.get("ItemsPath", "$"), effective, context)
        if not isinstance(items, list):
            raise StatesError("States.Runtime", f"{name}: ItemsPath did not select an array")
        results = []
        for index, item in enumerate(items):
            item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
            item_input = (
                evaluate_template(state["ItemSelector"], effective, item_context)
                if "ItemSelector" in state
                else copy.deepcopy(item)
            )
            self._record(execution, "MapIterationStarted", state=name, index=index)
            results.append(self._run_states(state["ItemProcessor"], item_input, context, execution))
        return results

    def _run_task_with_retry(
        self,
        name: str,
        state: Mapping[str, Any],
        task_input: Any,
        context: dict[str, Any],
        execution: Execution,
    ) -> Any:
        resource = state["Resource"]
        if resource not in self.resources:
            raise DefinitionError(f"{name}: no handler for resource {resource!r}")
        handler = self.resources[resource]

        def invoke() -> Any:
            self._record(
                execution, "TaskScheduled", state=name, resource=resource, input=task_input
            )
            lambda_context = LambdaContext(function_name=name, invoked_function_arn=resource)
            try:
                result = handler(_json_copy(task_input), lambda_context)
            except StatesError as failure:
                # a service integration's own error name (MediaConvert.ForbiddenException)
                self._record(
                    execution, "TaskFailed", state=name, error=failure.error, cause=failure.cause
                )
                raise
            except Exception as exc:  # the Lambda runtime reports every exception
                error = type(exc).__name__
                cause = json.dumps(
                    {
                        "errorMessage": str(exc),
                        "errorType": error,
                        "requestId": lambda_context.aws_request_id,
                        "stackTrace": traceback.format_tb(exc.__traceback__),
                    }
                )
                self._record(execution, "TaskFailed", state=name, error=error, cause=cause)
                raise StatesError(error, cause) from exc
            result = _json_copy(result)
            self._record(execution, "TaskSucceeded", state=name, output=result)
            return result

        return self._with_retry(name, state, execution, invoke)

    def _with_retry(
        self, name: str, state: Mapping[str, Any], execution: Execution, run: Callable[[], Any]
    ) -> Any:
        attempts: dict[int, int] = {}
        while True:
            try:
                return run()
            except StatesError as failure:
                retriers = state.get("Retry", [])
                index = next(
                    (
                        i
                        for i, r in enumerate(retriers)
                        if _error_matches(r["ErrorEquals"], failure.error)
                    ),
                    None,
                )
                if index is None:
                    raise
                retrier = retriers[index]
                done = attempts.get(index, 0)
                if done >= retrier.get("MaxAttempts", 3):
                    raise
                wait = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** done
                attempts[index] = done + 1
                self._record(
                    execution,
                    "RetryScheduled",
                    state=name,
                    error=failure.error,
                    attempt=done + 1,
                    wait_seconds=wait,
                )
                if self.retry_interval_scale:
                    time.sleep(wait * self.retry_interval_scale)
