#!/usr/bin/env python3
"""Checks a Tandem run's TensorBoard event files against its metrics.jsonl, with tensorboard's own reader.

    python scripts/interop/check_tensorboard.py EVENT_DIR METRICS_JSONL [--starts 1,11,...] [--strictly-increasing]

Reads EVENT_DIR with tensorboard's EventAccumulator (what TensorBoard shows, after it drops the steps a
SessionLog START supersedes) and checks that its tags are exactly the ones metrics.jsonl's keys map to
(loss -> train/loss, mfu -> throughput/mfu, t_data -> step_time/data, eval_loss -> eval/loss, ...), that
every tag has exactly the steps metrics.jsonl has for that key, and that each value and wall time equals
the last metrics.jsonl line for that step to the precision the line prints (TensorBoard stores float32).
Every file's records are also read one by one (their length and data CRCs checked, then parsed by
EventFileLoader): each file starts with file_version "brain.Event:2" and a SessionLog START; --starts
lists the START steps expected, file by file in name order (a run resumed from step S starts at S + 1),
and no scalar of a file may precede its START step. --strictly-increasing also requires every tag's steps
to increase strictly across all files (a run resumed from its newest checkpoint never writes a step
twice). Needs `pip install tensorboard` (no TensorFlow); launch/e2e-tests installs it into the reference
venv. Exits non-zero on any mismatch.
"""
import argparse
import decimal
import json
import os
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

# metrics.jsonl key -> TensorBoard tag (MetricsWriter.stepFields; eval_X -> eval/X).
STEP_TAGS = {
    "loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
    "samples_per_s": "throughput/samples_per_s", "tokens_per_s": "throughput/tokens_per_s", "mfu": "throughput/mfu",
    "t_data": "step_time/data", "t_forward": "step_time/forward", "t_backward": "step_time/backward",
    "t_grad_wait": "step_time/grad_wait", "t_optimizer": "step_time/optimizer", "t_checkpoint": "step_time/checkpoint",
    "t_step": "step_time/total",
}


def tag_of(key):
    if key in STEP_TAGS:
        return STEP_TAGS[key]
    if key.startswith("eval_"):
        return "eval/" + key[len("eval_"):]
    raise SystemExit(f"metrics.jsonl key {key!r} has no TensorBoard tag")


def framing_problems(path):
    """TFRecord framing checked record by record with tensorboard's masked CRC-32C: the loader stops at a
    bad record without saying so."""
    with open(path, "rb") as f:
        data = f.read()
    offset, records = 0, 0
    while offset < len(data):
        if len(data) - offset < 12:
            return records, f"{len(data) - offset} stray bytes at offset {offset}"
        length = struct.unpack_from("<Q", data, offset)[0]
        if struct.unpack_from("<I", data, offset + 8)[0] != masked_crc32c(data[offset:offset + 8]):
            return records, f"bad length CRC at offset {offset}"
        body = data[offset + 12:offset + 12 + length]
        if len(body) < length or len(data) < offset + 16 + length:
            return records, f"record at offset {offset} cut short"
        if struct.unpack_from("<I", data, offset + 12 + length)[0] != masked_crc32c(body):
            return records, f"bad data CRC at offset {offset}"
        offset += 16 + length
        records += 1
    return records, None


def tolerance(text, value):
    """Half a unit in the last printed digit, plus float32 rounding."""
    return 0.5 * 10.0 ** decimal.Decimal(text).as_tuple().exponent + 2.0 ** -24 * abs(value) + 1e-12


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("events")
    parser.add_argument("metrics")
    parser.add_argument("--starts", help="comma-separated SessionLog START steps, one per event file in name order")
    parser.add_argument("--strictly-increasing", action="store_true")
    args = parser.parse_args()
    problems = []

    # The last line for each (step, key), as metrics.jsonl printed it.
    expected = {}  # tag -> {step: (text, wall time text)}
    with open(args.metrics) as f:
        for line in f:
            record = json.loads(line, parse_float=str)
            step, time = int(record.pop("step")), record.pop("time")
            record.pop("rank")
            for key, text in record.items():
                expected.setdefault(tag_of(key), {})[step] = (text, time)

    files = sorted(n for n in os.listdir(args.events) if "tfevents" in n)
    starts = []
    last_step = {}
    for name in files:
        records, problem = framing_problems(os.path.join(args.events, name))
        if problem:
            problems.append(f"{name}: {problem}")
        events = list(EventFileLoader(os.path.join(args.events, name)).Load())
        if len(events) != records:
            problems.append(f"{name}: EventFileLoader read {len(events)} events of {records} records")
        if len(events) < 2 or events[0].file_version != "brain.Event:2" or not events[1].HasField("session_log") \
                or events[1].session_log.status != events[1].session_log.START:
            problems.append(f"{name}: does not start with file_version brain.Event:2 and a SessionLog START")
            continue
        start = events[1].step
        starts.append(start)
        for e in events[2:]:
            for v in e.summary.value:
                if e.step < start:
                    problems.append(f"{name}: {v.tag} at step {e.step}, before the file's START step {start}")
                if args.strictly_increasing and e.step <= last_step.get(v.tag, 0):
                    problems.append(f"{name}: {v.tag} at step {e.step} after step {last_step[v.tag]}")
                last_step[v.tag] = max(e.step, last_step.get(v.tag, 0))
    if args.starts is not None and starts != [int(s) for s in args.starts.split(",")]:
        problems.append(f"START steps of the files {starts}, expected {args.starts}")

    acc = EventAccumulator(args.events, size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    if tags != set(expected):
        problems.append(f"tags {sorted(tags)} != metrics.jsonl's {sorted(expected)}")
    compared = 0
    for tag in sorted(tags & set(expected)):
        got = {s.step: s for s in acc.Scalars(tag)}
        want = expected[tag]
        if sorted(got) != sorted(want):
            problems.append(f"{tag}: steps {sorted(got)} != metrics.jsonl's {sorted(want)}")
        for step in sorted(set(got) & set(want)):
            text, time = want[step]
            value = float(text)
            diff = abs(got[step].value - value)
            if diff > tolerance(text, value):
                problems.append(f"{tag} at step {step}: {got[step].value!r} in TensorBoard, {text} in metrics.jsonl")
            if abs(got[step].wall_time - float(time)) > tolerance(time, 0):
                problems.append(f"{tag} at step {step}: wall time {got[step].wall_time} != {time}")
            compared += 1

    for p in problems[:20]:
        print("MISMATCH", p)
    if problems:
        print(f"{len(problems)} mismatches")
        sys.exit(1)
    steps = len(set().union(*(set(v) for v in expected.values()))) if expected else 0
    print(f"{len(files)} event file(s), START steps {starts}, {len(tags)} tags, {steps} steps, {compared} values "
          f"equal to metrics.jsonl's (to the digits it prints; TensorBoard keeps float32)")


if __name__ == "__main__":
    main()
