"""`citeagent browse`: a person drives the text browser with the same commands the agent uses.
Each episode is appended to a JSONL file of demonstrations (every observation and action) for
behaviour cloning. Appending never rewrites earlier lines, and an interrupted episode is still
saved (marked incomplete) so that typed work is not lost."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from citeenv.browser import BrowserConfig
from citeenv.command_spec import USAGE
from citeenv.jsonl import JsonlRead, iter_jsonl
from citeenv.gym_env import TextBrowserEnv
from citeenv.unicode_text import without_lone_surrogates

HELP = USAGE + "\nIn the answering phase, type the answer text with [n] markers. Type :help for this, :quit to stop."


def save_demonstration(path: str | Path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a lone surrogate (from a corpus's "\\ud800" escape) would make the write fail and lose the episode
    line = without_lone_surrogates(json.dumps(record, ensure_ascii=False)) + "\n"
    with open(path, "a", encoding="utf-8") as f:  # append-only: earlier demonstrations stay intact
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def load_demonstrations(path: str | Path, complete_only: bool = True) -> list[dict]:
    """Read demonstrations, naming (not crashing on) lines that are not valid records."""
    out, read = [], JsonlRead(str(path))
    for lineno, rec in iter_jsonl(path, bad="skip", read=read):
        if not isinstance(rec.get("steps"), list) or "question" not in rec:
            read.bad_lines.append((lineno, "not a demonstration record"))
        elif rec.get("complete") or not complete_only:
            out.append(rec)
    if read.bad_lines:
        print(f"warning: skipped {read.describe_bad()}", file=sys.stderr)
    return out


def browse_loop(backend, question: str | None, out: str, max_actions: int = 30, corpus: str = "", layout: dict | None = None,
                read=input, write=print) -> int:
    # layout: BrowserConfig fields (e.g. citeagent.train.CPU_BROWSER), so that a person's
    # demonstrations show the same observations the policy trained on them will see.
    env = TextBrowserEnv(backend, BrowserConfig(**(layout or {}), max_actions=max_actions))
    if read is input and hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")  # a stray invalid byte becomes U+FFFD, not the end of the session
    while True:
        q = question
        while not q:
            try:
                q = read("Question (empty line to quit): ").strip()
            except EOFError:
                return 0
            if not q:
                return 0
        try:
            obs, info = env.reset(options={"question": q})
        except ValueError as e:
            write(f"error: {e}")
            question = None
            continue
        record = {"question": q, "corpus": corpus, "created": time.time(), "steps": [], "complete": False}
        write(obs)
        done = False
        failure = None
        try:
            while not done:
                try:
                    action = read("> ")
                except EOFError:
                    break
                if action.strip() == ":help":
                    write(HELP)
                    continue
                if action.strip() == ":quit":
                    break
                prev, phase = obs, info["phase"]
                obs, _, term, trunc, info = env.step(action)
                record["steps"].append({"observation": prev, "phase": phase, "action": action.strip(),
                                        "error": info["error"]})
                write(obs)
                done = term or trunc
        except KeyboardInterrupt:
            write("\n(interrupted)")
        except Exception as e:  # whatever broke, the typed work is saved before it is reported
            failure = e
        record["complete"] = failure is None and "answer" in info
        record["answer"] = info.get("answer") if record["complete"] else None
        save_demonstration(out, record)
        write(f"saved {'episode' if record['complete'] else 'incomplete episode'} to {out}")
        if failure is not None:
            write(f"error: the session stopped: {type(failure).__name__}: {str(failure)[:300]}")
            return 1
        if question or not done:
            return 0
