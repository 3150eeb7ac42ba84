"""A deterministic synthetic clinical world whose names Qwen2.5 has never seen.

Invented diseases, drugs, tests and signs (each name >= 3 tokens for Qwen2.5, with its leading space), one
monograph per entity as the knowledge base, and vignettes of 2-5 questions whose answers need the monographs,
with reference summary, answers and gold documents. It is what the offline demo trains on and what the strategy
comparison evaluates on; real data (../shared/data) is only for tests.

    python -m qwenft.data.synthetic --out DIR --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

ONSETS = ["br", "cr", "dr", "fl", "gr", "kl", "pr", "qu", "sk", "str", "th", "tr", "v", "x", "z", "m", "n", "p"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ou", "y"]
CODAS = ["", "l", "n", "r", "s", "x", "th", "nd", "rk"]
SUFFIX = {
    "disease": ["itis", "osis", "emia", "opathy", "algia"],
    "drug": ["mab", "zolid", "vastin", "pril", "cillin", "floxin"],
    "test": ["gram", "metry", "scopy", "assay"],
    "sign": ["'s sign", " reflex", " phenomenon"],
}
ORGANS = ["heart", "liver", "kidney", "lung", "brain", "skin", "pancreas", "thyroid", "spleen", "bone marrow"]
MECHANISMS = ["blocks the {x} receptor", "inhibits {x} synthesis", "activates {x} channels",
              "depletes {x} stores", "binds circulating {x}"]
MOLECULES = ["glutamate", "renin", "histamine", "collagen", "ferritin", "insulin", "calcium", "cortisol"]


@dataclass
class Entity:
    id: str
    kind: str
    name: str
    gloss: str
    text: str


def _name(rng: random.Random, kind: str, tokenizer, used: set[str]) -> str:
    while True:
        root = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.randint(2, 3)))
        base = root + rng.choice(SUFFIX[kind])
        word = base.split("'")[0].split(" ")[0]
        if word in used or len(word) < 7:
            continue
        if len(tokenizer(" " + word, add_special_tokens=False).input_ids) >= 3:
            used.add(word)
            return base[0].upper() + base[1:] if kind == "sign" else base


def build_world(seed: int = 0, n_diseases: int = 12, tokenizer=None) -> dict[str, list[Entity]]:
    """Diseases, each with its own drug, confirmatory test and characteristic sign."""
    if tokenizer is None:
        from qwenft.model.qwen_tokenizer import qwen25_tokenizer

        tokenizer = qwen25_tokenizer()
    rng = random.Random(seed)
    used: set[str] = set()
    world: dict[str, list[Entity]] = {"disease": [], "drug": [], "test": [], "sign": []}
    for i in range(n_diseases):
        organ = rng.choice(ORGANS)
        disease = _name(rng, "disease", tokenizer, used)
        drug = _name(rng, "drug", tokenizer, used)
        test = _name(rng, "test", tokenizer, used)
        sign = _name(rng, "sign", tokenizer, used)
        mech = rng.choice(MECHANISMS).format(x=rng.choice(MOLECULES))
        days = rng.choice([5, 7, 10, 14, 21])
        world["disease"].append(Entity(
            f"disease-{i}", "disease", disease, f"a disorder of the {organ}",
            f"{disease} is an inflammatory disorder of the {organ}. It presents with {sign} and fatigue. "
            f"The diagnosis is confirmed by {test}. First-line treatment is {drug} for {days} days."))
        world["drug"].append(Entity(
            f"drug-{i}", "drug", drug, f"a drug that {mech}",
            f"{drug} is a drug that {mech}. It is the first-line treatment of {disease}, given for {days} "
            f"days. Its main adverse effect is transient nausea."))
        world["test"].append(Entity(
            f"test-{i}", "test", test, f"a test of the {organ}",
            f"{test} is a diagnostic test of the {organ}. A positive {test} confirms {disease}."))
        world["sign"].append(Entity(
            f"sign-{i}", "sign", sign, f"a clinical sign of {organ} disease",
            f"{sign} is a clinical sign seen in {disease}: it points to disease of the {organ}."))
    return world


def _key_word(name: str) -> str:
    return name.split("'")[0].split(" ")[0]


def vignette(rng: random.Random, world: dict[str, list[Entity]], idx: int, vid: str) -> dict:
    d, drug, test, sign = (world[k][idx] for k in ("disease", "drug", "test", "sign"))
    organ = d.gloss.split("the ")[-1]
    age, sex = rng.randint(19, 84), rng.choice(["woman", "man"])
    days = rng.randint(2, 20)
    scenario = (f"A {age}-year-old {sex} presents with {days} days of fatigue. On examination there is "
                f"{sign.name}. {test.name} is positive.")
    qa = [
        ("What is the most likely diagnosis?", f"The most likely diagnosis is {d.name}.", [d.id, sign.id]),
        ("What is the first-line treatment?", f"The first-line treatment is {drug.name}.", [d.id, drug.id]),
        (f"Which organ does {d.name} affect?", f"{d.name} affects the {organ}.", [d.id]),
        (f"What does {test.name} confirm?", f"A positive {test.name} confirms {d.name}.", [test.id]),
        (f"How does {drug.name} work?", f"{drug.name} is a drug that {drug.gloss[len('a drug that '):]}.",
         [drug.id]),
    ]
    chosen = rng.sample(qa, rng.randint(2, 5))
    summary = f"A {age}-year-old {sex} with fatigue, {sign.name} and a positive {test.name}."
    words = sorted({_key_word(e.name) for e in (d, drug, test, sign)})
    return {
        "id": vid,
        "scenario": scenario,
        "questions": [q for q, _, _ in chosen],
        "summary": summary,
        "answers": [a for _, a, _ in chosen],
        "gold_docs": [docs for _, _, docs in chosen],
        "new_words": [w for w in words if any(w in t for t in [scenario, summary, *[a for _, a, _ in chosen]])],
    }


def write_world(out_dir: str | Path, seed: int = 0, n_train: int = 200, n_val: int = 40, n_test: int = 40,
                n_diseases: int = 12) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(seed, n_diseases)
    rng = random.Random(seed + 1)
    paths = {}
    entities = [e for kind in world.values() for e in kind]
    paths["kb"] = out / "kb.jsonl"
    paths["kb"].write_text("".join(json.dumps({"id": e.id, "title": e.name, "text": e.text}) + "\n"
                                   for e in entities))
    paths["words"] = out / "words.txt"
    paths["words"].write_text("".join(f"{_key_word(e.name)}\t{e.gloss}\n" for e in entities))
    counter = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        rows = []
        for _ in range(n):
            rows.append(vignette(rng, world, rng.randrange(n_diseases), f"{split}-{counter}"))
            counter += 1
        paths[split] = out / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-val", type=int, default=40)
    parser.add_argument("--n-test", type=int, default=40)
    args = parser.parse_args()
    for name, path in write_world(args.out, args.seed, args.n_train, args.n_val, args.n_test).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
