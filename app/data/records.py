"""Input record formats → one normalized record per record type, with per-row validation.

Input formats (``input_format``; ``auto`` picks per row from its keys):

===========  ======================================================  =====================================
format       keys                                                    usable as record types
===========  ======================================================  =====================================
gsm8k        question, answer ("… #### 72")                          sft, prompt (reference = final number)
hh_rlhf      chosen, rejected ("\\n\\nHuman: …\\n\\nAssistant: …")   preference, sft (chosen), prompt
sft          instruction[, input], response  |  prompt, completion    sft, prompt
chat         messages [{role, content}]                              sft, prompt (messages end with user)
preference   TRL: prompt (str | msgs), chosen, rejected (str |       preference, prompt
             [assistant msg]); or implicit prompt: chosen, rejected
             as whole conversations sharing every turn but the last
kto          TRL unpaired: prompt (str | msgs), completion (str |    unpaired, prompt
             [assistant msg]), label (true = desirable)
openai_dpo   OpenAI preference fine-tuning JSONL: input.messages,    preference, prompt
             preferred_output, non_preferred_output ([assistant])
prompt       prompt (str) | messages, optional reference             prompt
===========  ======================================================  =====================================

Normalized records: sft → ``{"messages"}`` ending with an assistant turn; preference → ``{"prompt_messages",
"chosen", "rejected"}``; unpaired → ``{"prompt_messages", "completion", "label"}`` (KTO: label true = desirable);
prompt → ``{"prompt_messages", "reference"}``. Every problem raises RowError(field, reason).
"""

from __future__ import annotations

import json
import re
from typing import Any

from app.data.errors import RowError

INPUT_FORMATS = ("auto", "gsm8k", "hh_rlhf", "sft", "chat", "preference", "kto", "openai_dpo", "prompt")
RECORD_TYPES = ("sft", "preference", "unpaired", "prompt")
ROLES = ("system", "user", "assistant")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


def decode_json_line(raw: bytes) -> dict[str, Any]:
    """One JSONL line → dict; non-UTF-8 bytes, bad JSON or a non-object are RowErrors."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RowError("<line>", f"not valid UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RowError("<line>", f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise RowError("<line>", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def require_text(row: dict[str, Any], field: str, allow_empty: bool = False) -> str:
    """row[field] as a non-empty, UTF-8-encodable string."""
    if field not in row or row[field] is None:
        raise RowError(field, "missing")
    value = row[field]
    if not isinstance(value, str):
        raise RowError(field, f"expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RowError(field, "empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RowError(field, "contains invalid unicode (lone surrogate)") from None
    return value


def validate_messages(value: Any, field: str, must_end_with: str | None) -> list[dict[str, str]]:
    """A chat: list of {role, content}; system only first; user/assistant alternate from user; optional last role."""
    if value is None:
        raise RowError(field, "missing")
    if not isinstance(value, list):
        raise RowError(field, f"expected a list of messages, got {type(value).__name__}")
    if not value:
        raise RowError(field, "empty")
    out: list[dict[str, str]] = []
    for i, msg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(msg, dict):
            raise RowError(where, f"expected an object with role and content, got {type(msg).__name__}")
        extra = set(msg) - {"role", "content", "name"}
        if extra:
            raise RowError(where, f"unknown keys {sorted(extra)}")
        role = msg.get("role")
        if role not in ROLES:
            raise RowError(f"{where}.role", f"must be one of {ROLES}, got {role!r}")
        content = require_text(msg, "content")  # raises with field 'content'
        out.append({"role": role, "content": content})
    turns = out[1:] if out[0]["role"] == "system" else out
    for i, msg in enumerate(turns):
        want = "user" if i % 2 == 0 else "assistant"
        if msg["role"] != want:
            pos = i + (len(out) - len(turns))
            reason = "system is only allowed first" if msg["role"] == "system" else f"expected {want} (turns alternate from user)"
            raise RowError(f"{field}[{pos}].role", reason)
    if not turns:
        raise RowError(field, "only a system message")
    if must_end_with and out[-1]["role"] != must_end_with:
        raise RowError(field, f"must end with a {must_end_with} turn, ends with {out[-1]['role']}")
    return out


def parse_hh_transcript(text: str, field: str) -> list[dict[str, str]]:
    """'\\n\\nHuman: …\\n\\nAssistant: …' → messages (user/assistant), validated to alternate."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise RowError(field, "not an HH-RLHF transcript (expected '\\n\\nHuman: …\\n\\nAssistant: …')")
    msgs = []
    for role, content in zip(parts[1::2], parts[2::2]):
        msgs.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    if any(not m["content"] for m in msgs[:-1]):
        raise RowError(field, "a turn has empty content")
    return msgs


def detect_format(row: dict[str, Any]) -> str:
    keys = set(row)
    if "question" in keys and "answer" in keys:
        return "gsm8k"
    if keys & {"preferred_output", "non_preferred_output"}:
        return "openai_dpo"
    if "label" in keys and keys & {"prompt", "completion"}:
        return "kto"
    if keys & {"chosen", "rejected"}:  # a row missing one side is still a preference row (quarantined naming the side)
        conversational = any(isinstance(row.get(k), list) for k in ("chosen", "rejected"))
        return "preference" if "prompt" in keys or conversational else "hh_rlhf"
    if "messages" in keys:
        return "chat"
    if "instruction" in keys or {"prompt", "completion"} <= keys or "response" in keys:
        return "sft"
    if "prompt" in keys:
        return "prompt"
    raise RowError("<row>", f"cannot tell the format from keys {sorted(keys)[:8]}")


def _gsm8k_reference(answer: str) -> str:
    m = _GSM8K_FINAL.search(answer)
    if not m:
        raise RowError("answer", "GSM8K answer has no final '#### <number>'")
    return m.group(1).replace(",", "").strip()


def _prompt_messages_field(row: dict[str, Any], field: str) -> list[dict[str, str]]:
    value = row.get(field)
    if isinstance(value, list):
        return validate_messages(value, field, must_end_with="user")
    return [{"role": "user", "content": require_text(row, field)}]


def _response_field(row: dict[str, Any], field: str) -> str:
    """A response: a string, or (TRL conversational / OpenAI) a list of exactly one assistant message."""
    value = row.get(field)
    if isinstance(value, list):
        if len(value) != 1:
            raise RowError(field, f"a chat-form response must be one assistant message, got {len(value)} messages")
        msg = value[0]
        if not isinstance(msg, dict):
            raise RowError(f"{field}[0]", f"expected an object with role and content, got {type(msg).__name__}")
        extra = set(msg) - {"role", "content", "name"}
        if extra:
            raise RowError(f"{field}[0]", f"unknown keys {sorted(extra)}")
        if msg.get("role") != "assistant":
            raise RowError(f"{field}[0].role", f"the response must be an assistant message, got {msg.get('role')!r}")
        try:
            return require_text(msg, "content")
        except RowError as err:
            raise RowError(f"{field}[0].content", err.reason) from None
    return require_text(row, field)


def _implicit_prompt_pair(row: dict[str, Any]) -> tuple[list[dict[str, str]], str, str]:
    """TRL's implicit-prompt conversational pair: chosen and rejected are whole chats that differ only in the last turn."""
    chosen = validate_messages(row.get("chosen"), "chosen", must_end_with="assistant")
    rejected = validate_messages(row.get("rejected"), "rejected", must_end_with="assistant")
    if chosen[:-1] != rejected[:-1]:
        raise RowError("rejected", "does not share the chosen conversation's prompt (every turn but the last)")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def _label_field(row: dict[str, Any]) -> bool:
    value = row.get("label")
    if value is None:
        raise RowError("label", "missing")
    if not isinstance(value, bool):
        raise RowError("label", f"expected true (desirable) or false (undesirable), got {type(value).__name__} {value!r}"[:120])
    return value


def _openai_prompt(row: dict[str, Any]) -> list[dict[str, str]]:
    """OpenAI DPO ``input``: {messages, tools?, parallel_tool_calls?}; the messages end with the user turn."""
    value = row.get("input")
    if not isinstance(value, dict):
        raise RowError("input", "missing" if value is None else f"expected an object with messages, got {type(value).__name__}")
    extra = set(value) - {"messages", "tools", "parallel_tool_calls"}
    if extra:
        raise RowError("input", f"unknown keys {sorted(extra)}")
    if value.get("tools"):
        raise RowError("input.tools", "tool definitions are not supported (text-only preference pairs)")
    return validate_messages(value.get("messages"), "input.messages", must_end_with="user")


def normalize(row: dict[str, Any], record_type: str, input_format: str = "auto") -> dict[str, Any]:
    """Validate one input row and convert it to the normalized record of ``record_type``."""
    fmt = detect_format(row) if input_format == "auto" else input_format
    if input_format == "auto" and record_type == "unpaired" and fmt == "sft":
        fmt = "kto"  # prompt/completion without a label: name the missing label, not the format
    if fmt == "gsm8k":
        q, a = require_text(row, "question"), require_text(row, "answer")
        if record_type == "sft":
            return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        if record_type == "prompt":
            return {"prompt_messages": [{"role": "user", "content": q}], "reference": _gsm8k_reference(a)}
    elif fmt == "hh_rlhf":
        chosen = parse_hh_transcript(require_text(row, "chosen"), "chosen")
        rejected = parse_hh_transcript(require_text(row, "rejected"), "rejected")
        prompt = validate_messages(chosen[:-1], "chosen", must_end_with="user")
        if record_type == "preference":
            if rejected[:-1] != chosen[:-1]:
                raise RowError("rejected", "does not share the chosen transcript's prompt")
            for name, msgs in (("chosen", chosen), ("rejected", rejected)):
                if msgs[-1]["role"] != "assistant" or not msgs[-1]["content"]:
                    raise RowError(name, "must end with a non-empty Assistant turn")
            return {"prompt_messages": prompt, "chosen": chosen[-1]["content"], "rejected": rejected[-1]["content"]}
        if record_type == "sft":
            return {"messages": validate_messages(chosen, "chosen", must_end_with="assistant")}
        if record_type == "prompt":
            return {"prompt_messages": prompt, "reference": ""}
    elif fmt == "sft":
        if "instruction" in row:
            instr = require_text(row, "instruction")
            extra = row.get("input") or ""
            if not isinstance(extra, str):
                raise RowError("input", f"expected a string, got {type(extra).__name__}")
            user = instr if not extra.strip() else f"{instr}\n\n{extra}"
            answer = require_text(row, "response" if "response" in row else "output")
        else:
            user, answer = require_text(row, "prompt"), require_text(row, "completion")
        if record_type == "sft":
            return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}
        if record_type == "prompt":
            return {"prompt_messages": [{"role": "user", "content": user}], "reference": answer}
    elif fmt == "chat":
        if record_type == "sft":
            return {"messages": validate_messages(row.get("messages"), "messages", must_end_with="assistant")}
        if record_type == "prompt":
            return {"prompt_messages": validate_messages(row.get("messages"), "messages", must_end_with="user"), "reference": _reference(row)}
    elif fmt in ("preference", "openai_dpo"):
        if fmt == "openai_dpo":
            prompt = _openai_prompt(row)
            chosen, rejected = _response_field(row, "preferred_output"), _response_field(row, "non_preferred_output")
            other = "non_preferred_output"
        elif "prompt" in row:
            prompt = _prompt_messages_field(row, "prompt")
            chosen, rejected, other = _response_field(row, "chosen"), _response_field(row, "rejected"), "rejected"
        else:
            (prompt, chosen, rejected), other = _implicit_prompt_pair(row), "rejected"
        if record_type == "preference":
            if chosen == rejected:
                raise RowError(other, "identical to the preferred response")
            return {"prompt_messages": prompt, "chosen": chosen, "rejected": rejected}
        if record_type == "prompt":
            return {"prompt_messages": prompt, "reference": ""}
    elif fmt == "kto":
        prompt = _prompt_messages_field(row, "prompt")
        if record_type == "unpaired":
            return {"prompt_messages": prompt, "completion": _response_field(row, "completion"), "label": _label_field(row)}
        if record_type == "prompt":
            return {"prompt_messages": prompt, "reference": ""}
    elif fmt == "prompt":
        if record_type == "prompt":
            field = "messages" if "messages" in row else "prompt"
            return {"prompt_messages": _prompt_messages_field(row, field), "reference": _reference(row)}
    else:
        raise RowError("<row>", f"unknown input format {fmt!r}")
    hint = " (KTO's prompt/completion/label rows are record_type 'unpaired')" if fmt == "kto" else ""
    if record_type == "unpaired" and fmt != "kto":
        hint = " (record_type 'unpaired' needs KTO rows: prompt, completion, label)"
    raise RowError("<row>", f"format {fmt!r} cannot make a {record_type!r} record{hint}")


def _reference(row: dict[str, Any]) -> str:
    ref = row.get("reference", "")
    if ref is None:
        return ""
    if not isinstance(ref, (str, int, float)):
        raise RowError("reference", f"expected a string, got {type(ref).__name__}")
    return str(ref)


def prompt_of(record: dict[str, Any]) -> dict[str, Any]:
    """The conversation a record answers: ``prompt_messages`` (preference, unpaired, prompt records) or an sft
    record's messages up to its last assistant turn. An HH-RLHF transcript gives the same prompt as an sft, a
    preference or a prompt record, so ``split_by: prompt`` puts it on the same side of every artifact's split."""
    if "prompt_messages" in record:
        return {"prompt_messages": record["prompt_messages"]}
    messages = record["messages"]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
    return {"prompt_messages": messages[:last]}


def canonical_text(record: dict[str, Any]) -> str:
    """Canonical JSON of a normalized record (exact dedup key: whitespace-normalized, case kept, sorted keys)."""
    def norm(x):
        if isinstance(x, str):
            return " ".join(x.split())
        if isinstance(x, list):
            return [norm(v) for v in x]
        if isinstance(x, dict):
            return {k: norm(v) for k, v in x.items()}
        return x

    return json.dumps(norm(record), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def dedup_text(record: dict[str, Any]) -> str:
    """The text near-dup dedup and contamination look at: every message / response joined by newlines."""
    parts = [m["content"] for m in record.get("messages", record.get("prompt_messages", []))]
    parts += [record[k] for k in ("chosen", "rejected", "completion") if k in record]
    return "\n".join(parts)
