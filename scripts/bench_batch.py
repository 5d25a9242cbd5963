"""People per minute: `generate` in a new process per person, the in-process `batch`, and `batch --ray`
on a local Ray, side by side in one run, on v1-sized random models (no download).

    python scripts/bench_batch.py --people 8 --photos 3 --out docs/bench/cpu_2core_batch.json

The models (written once into --cache-dir): the HyperLoRA release at the v1 size (bench/synthetic.py,
all SDXL attention modules, float16, 3 GB), CLIP ViT-L/14's vision tower with random weights, and
random-weight ONNX face models with antelopev2's compute (bench/faces.py), which find one face in the
stand-in portraits. Each mode runs as the user runs it, a command in a new process, timed from start to
exit: model loading and (for Ray) starting Ray count. Per mode: people per minute of the whole run,
and each person's seconds (min / median / max): for `generate` the wall time of its process, for the
batch the person's stage seconds from report.jsonl. --repeats repeats the three modes in turn.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_models(cache: Path) -> Path:
    import torch
    from PIL import Image  # noqa: F401
    from safetensors.torch import save_file

    from hyperlora_core.bench.faces import make_real_size_antelopev2
    from hyperlora_core.bench.run import ensure_checkpoint
    from hyperlora_core.constants import VARIANTS
    from hyperlora_core.model.checkpoint import sdxl_attention_modules

    models = cache / "models"
    release = models / "hyperlora" / VARIANTS[0]
    if not release.is_dir():
        source = ensure_checkpoint(cache, len(sdxl_attention_modules()))
        release.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, release)
    clip = models / "hyper_lora" / "clip_vit" / "clip_vit_large_14"
    if not (clip / "model.safetensors").is_file():
        from transformers import CLIPVisionConfig, CLIPVisionModel

        config = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=224, patch_size=14, projection_dim=768,
                                  hidden_act="quick_gelu", layer_norm_eps=1e-5)
        torch.manual_seed(0)
        model = CLIPVisionModel(config).eval()
        clip.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(str(clip))
        state = {(k if k.startswith("vision_model.") else f"vision_model.{k}"): v.contiguous()
                 for k, v in model.state_dict().items() if not k.endswith("position_ids")}
        state["visual_projection.weight"] = torch.randn(768, 1024) * 0.02
        save_file(state, str(clip / "model.safetensors"), metadata={"format": "pt"})
    make_real_size_antelopev2(models / "insightface" / "models" / "antelopev2")
    return models


def make_people(folder: Path, people: int, photos: int) -> Path:
    from PIL import Image

    from hyperlora_core.bench.faces import portrait

    if folder.is_dir() and len(list(folder.iterdir())) == people:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for n in range(people):
        person = folder / f"person_{n:02d}"
        person.mkdir(parents=True)
        for k in range(photos):
            Image.fromarray(portrait(seed=100 * n + k)).save(person / f"{k}.jpg", quality=92)
    return folder


def _run(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}); see {log}")
    return seconds


def _spread(values: list[float]) -> dict:
    return {"min_s": round(min(values), 3), "median_s": round(statistics.median(values), 3),
            "max_s": round(max(values), 3)}


def bench_generate(people: Path, models: Path, work: Path) -> dict:
    out = work / "generate"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    per_person = []
    for person in sorted(people.iterdir()):
        per_person.append(_run([sys.executable, "-m", "hyperlora_core", "generate", "--photos", str(person),
                                "--out", str(out / f"{person.name}.safetensors"), "--save-identity",
                                str(out / f"{person.name}.identity.safetensors"), "--models-dir", str(models),
                                "--skip-no-face"], work / f"generate_{person.name}.log"))
    total = sum(per_person)
    return {"seconds": round(total, 3), "people_per_minute": round(60 * len(per_person) / total, 3),
            "person_seconds": _spread(per_person)}


def bench_batch(people: Path, models: Path, work: Path, ray: bool) -> dict:
    name = "ray" if ray else "batch"
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "hyperlora_core", "batch", str(people), "--out", str(out), "--models-dir",
               str(models), "--no-progress"] + (["--ray"] if ray else [])
    total = _run(command, work / f"{name}.log")
    lines = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    made = [line for line in lines if line["status"] == "made"]
    if len(made) != len(lines):
        raise SystemExit(f"{name}: not every person was made; see {out / 'report.jsonl'}")
    summary = json.loads((out / "summary.json").read_text())
    return {"seconds": round(total, 3), "people_per_minute": round(60 * len(made) / total, 3),
            "person_seconds": _spread([line["seconds"] for line in made]),
            "inside_seconds": summary["seconds"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=["generate", "batch", "ray"], choices=["generate", "batch", "ray"])
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/hyperlora_bench_batch"))
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)

    import torch

    from hyperlora_core.bench.common import finish_machine, machine

    info = machine(torch.device("cpu"))
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    print("[bench] models ...", flush=True)
    models = make_models(args.cache_dir)
    people = make_people(args.cache_dir / f"people_{args.people}x{args.photos}", args.people, args.photos)
    runs: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for repeat in range(args.repeats):
        for mode in args.modes:
            print(f"[bench] repeat {repeat + 1}/{args.repeats}: {mode} ...", flush=True)
            result = (bench_generate(people, models, args.cache_dir) if mode == "generate"
                      else bench_batch(people, models, args.cache_dir, ray=mode == "ray"))
            print(f"[bench]   {json.dumps(result)}", flush=True)
            runs[mode].append(result)
    report = {
        "what": f"{args.people} people x {args.photos} photos (1024x1024 JPEG), v1-sized random models, CPU; each "
                "mode a command in a new process, timed from start to exit",
        "modes": {
            "generate": "python -m hyperlora_core generate --photos PERSON/ --save-identity ... --skip-no-face, "
                        "a new process per person, one after the other",
            "batch": "python -m hyperlora_core batch PEOPLE/ --out ... (models loaded once, faces in a thread ahead)",
            "ray": "python -m hyperlora_core batch PEOPLE/ --out ... --ray (a local Ray started by the command: "
                   "face tasks + 1 network actor)",
        },
        "people_per_minute": {mode: _spread([r["people_per_minute"] for r in results]) | {"runs": len(results)}
                              for mode, results in runs.items()},
        "runs": runs,
        "machine": finish_machine(info),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
