"""A deterministic synthetic clinical world whose names Qwen2.5 has never seen.

Real clinical data cannot ship with the project and the model already knows real diseases, so the offline demo
and the strategy comparison run on an invented world: diseases, drugs, tests and signs whose names are out of
Qwen2.5's vocabulary (each at least 3 tokens with the real tokenizer, bare, after a space, and capitalised), one
monograph per entity as the knowledge base, and vignettes whose answers need those monographs -- the scenario
names the sign and the test results but never the disease, so the diagnosis, its drug and everything about the
drug are found only by reading (or having learned) the knowledge base.

    python -m qwenft.data.synthetic --out DIR --seed 0 [--n-train 200 --n-val 40 --n-test 40]

Files written (``qwenft/resources/demo/`` is this with the defaults):

* ``kb.jsonl``: ``{id, title, text}`` -- one monograph per entity (ids ``disease-3``, ``drug-3``, ...).
* ``train.jsonl`` / ``val.jsonl`` / ``test.jsonl``: clinical records ``{id, scenario, questions, summary,
  answers, gold_docs, new_words}`` (2-5 questions; ``gold_docs[i]``: the monographs that answer question i).
* ``train_prompt_completion.jsonl``: ``{prompt, completion}`` -- the train vignettes as the default
  (``decomposition``) strategy trains them, plus one "What is X?" -> monograph example per entity.
* ``words.txt``: ``word<TAB>short gloss``, one new word a line, for vocabulary extension.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

MIN_TOKENS = 3
ORGANS = {  # organ -> (two presenting symptoms)
    "heart": ("chest pain", "palpitations"),
    "liver": ("jaundice", "right upper quadrant pain"),
    "kidney": ("flank pain", "reduced urine output"),
    "lung": ("a dry cough", "breathlessness"),
    "brain": ("headache", "episodes of confusion"),
    "skin": ("an itching rash", "peeling of the palms"),
    "pancreas": ("epigastric pain", "weight loss"),
    "thyroid": ("heat intolerance", "a fine tremor"),
    "spleen": ("left upper quadrant pain", "early satiety"),
    "bone marrow": ("easy bruising", "fatigue"),
    "eye": ("blurred vision", "eye pain"),
    "joints": ("morning stiffness", "swollen knuckles"),
}
ONSETS = ["b", "br", "c", "cr", "d", "dr", "f", "g", "gr", "k", "l", "m", "n", "p", "ph", "qu", "r", "s", "t", "tr",
          "v", "x", "z"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "y"]
CODAS = ["", "", "l", "n", "r", "s", "x", "th", "nd", "rk", "v"]
DISEASE_SUFFIXES = ["itis", "osis", "emia", "opathy", "algia", "oma"]
DRUGS = {"mab": "monoclonal antibody", "tinib": "kinase inhibitor", "vastin": "enzyme inhibitor",
         "cillin": "antibiotic", "parin": "anticoagulant", "sartan": "receptor blocker", "zolid": "antibiotic"}
TEST_SUFFIXES = ["gram", "metry", "scopy", "assay"]
SIGN_KINDS = ["sign", "reflex", "phenomenon"]
MOLECULES = ["glutamate", "renin", "histamine", "collagen", "ferritin", "insulin", "calcium", "cortisol", "myelin",
             "surfactant", "keratin", "fibrin"]
MECHANISMS = ["blocks the {x} receptor", "inhibits {x} synthesis", "activates {x} channels", "depletes {x} stores",
              "binds circulating {x}"]
ADVERSE = ["transient nausea", "photosensitivity", "a low platelet count", "a metallic taste", "ankle swelling",
           "insomnia", "hair thinning", "dry mouth"]
CHECKS = ["kidney function", "liver enzymes", "a pregnancy test", "the full blood count", "an ECG",
          "blood glucose"]
SPECIMENS = ["serum", "urine", "saliva", "cerebrospinal fluid", "sputum"]
SIGN_FINDINGS = ["a bluish ring around the {site}", "pain when the {site} is pressed",
                 "a flicker of the {site} on tapping", "a pale patch over the {site}",
                 "a slow return of colour to the {site}"]
SITES = ["left thumb", "earlobe", "lower lip", "kneecap", "navel", "collarbone", "heel", "wrist crease"]
HISTORY = ["She has no relevant past medical history.", "He had a similar episode two years ago.",
           "There is no recent travel.", "A sibling had a similar illness.", "The patient takes no regular medicines.",
           "The symptoms worsened over the last week."]


@dataclass
class Entity:
    id: str
    kind: str  # disease | drug | test | sign
    name: str  # as written in text ("Dravik's sign" for a sign)
    word: str  # the new word itself ("Dravik")
    gloss: str
    text: str = ""


@dataclass
class Disease:
    """One disease and everything the knowledge base says about it."""

    index: int
    organ: str
    disease: Entity
    drug: Entity
    test: Entity
    sign: Entity
    days: int
    mechanism: str
    adverse: str
    check: str
    analyte: str
    specimen: str
    finding: str


def token_counts(tokenizer, word: str) -> list[int]:
    """Tokens for the word bare, after a space, and capitalised both ways (how it appears in running text)."""
    forms = {word, " " + word, word[:1].upper() + word[1:], " " + word[:1].upper() + word[1:]}
    return [len(tokenizer(f, add_special_tokens=False).input_ids) for f in sorted(forms)]


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _root(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables))


def _new_word(rng: random.Random, suffix: str, tokenizer, used: set[str], syllables: tuple[int, int]) -> str:
    """A pseudo-word of at least MIN_TOKENS tokens in every form, distinct from every earlier one."""
    while True:
        word = _root(rng, rng.randint(*syllables)) + suffix
        if word in used or not 7 <= len(word) <= 18 or any(w in word or word in w for w in used):
            continue
        if min(token_counts(tokenizer, word)) >= MIN_TOKENS:
            used.add(word)
            return word


def build_world(seed: int = 0, n_diseases: int = 10, tokenizer=None) -> list[Disease]:
    """``n_diseases`` diseases, each with its own first-line drug, confirmatory test and characteristic sign."""
    if tokenizer is None:
        from qwenft.model.qwen_tokenizer import qwen25_tokenizer

        tokenizer = qwen25_tokenizer()
    rng = random.Random(seed)
    used: set[str] = set()
    organs = list(ORGANS)
    rng.shuffle(organs)
    world = []
    for i in range(n_diseases):
        organ = organs[i % len(organs)]
        d_word = _new_word(rng, rng.choice(DISEASE_SUFFIXES), tokenizer, used, (2, 3))
        suffix = rng.choice(sorted(DRUGS))
        g_word = _new_word(rng, suffix, tokenizer, used, (2, 3))
        t_word = _new_word(rng, rng.choice(TEST_SUFFIXES), tokenizer, used, (2, 3))
        s_word = _new_word(rng, "", tokenizer, used, (2, 3)).capitalize()
        kind = rng.choice(SIGN_KINDS)
        s_name = f"{s_word}'s sign" if kind == "sign" else f"{s_word} {kind}"
        molecule = rng.choice(MOLECULES)
        world.append(Disease(
            index=i, organ=organ,
            disease=Entity(f"disease-{i}", "disease", d_word, d_word, f"a disease of the {organ}"),
            drug=Entity(f"drug-{i}", "drug", g_word, g_word, f"{_a(DRUGS[suffix])} that treats {d_word}"),
            test=Entity(f"test-{i}", "test", t_word, t_word, f"a test that confirms {d_word}"),
            sign=Entity(f"sign-{i}", "sign", s_name, s_word, f"the {kind} of {d_word}"),
            days=rng.choice([5, 7, 10, 14, 21, 28]),
            mechanism=rng.choice(MECHANISMS).format(x=molecule),
            adverse=rng.choice(ADVERSE), check=rng.choice(CHECKS),
            analyte=f"{rng.choice(MOLECULES)} {rng.choice(['antibodies', 'fragments', 'complexes'])}",
            specimen=rng.choice(SPECIMENS),
            finding=rng.choice(SIGN_FINDINGS).format(site=rng.choice(SITES)),
        ))
    for d in world:
        s1, s2 = ORGANS[d.organ]
        cls = DRUGS[next(s for s in DRUGS if d.drug.word.endswith(s))]
        d.disease.text = (f"{d.disease.name} is an inflammatory disease of the {d.organ}. It presents with {s1} and "
                          f"{s2}; {d.sign.name} is characteristic on examination. The diagnosis is confirmed by a "
                          f"positive {d.test.name}. First-line treatment is {d.drug.name} for {d.days} days.")
        d.drug.text = (f"{d.drug.name} is {_a(cls)} that {d.mechanism}. It is the first-line treatment of "
                       f"{d.disease.name}, given for {d.days} days. Its main adverse effect is {d.adverse}; "
                       f"{d.check} must be checked before the first dose.")
        d.test.text = (f"{d.test.name} is a laboratory test that measures {d.analyte} in {d.specimen}. A positive "
                       f"{d.test.name} confirms {d.disease.name}.")
        d.sign.text = (f"{d.sign.name} is {d.finding}. It indicates {d.organ} involvement and is characteristic "
                       f"of {d.disease.name}.")
    return world


def entities(world: list[Disease]) -> list[Entity]:
    return [e for d in world for e in (d.disease, d.drug, d.test, d.sign)]


def _questions(d: Disease) -> dict[str, tuple[str, str, list[str]]]:
    """kind -> (question, reference answer, gold doc ids). No question names the disease or its drug."""
    return {
        "diagnosis": ("What is the most likely diagnosis?", f"The most likely diagnosis is {d.disease.name}.",
                      [d.disease.id]),
        "treatment": ("What is the first-line treatment?",
                      f"The first-line treatment is {d.drug.name} for {d.days} days.", [d.disease.id, d.drug.id]),
        "mechanism": ("How does the first-line drug work?", f"{d.drug.name} {d.mechanism}.",
                      [d.disease.id, d.drug.id]),
        "adverse": ("Which adverse effect of the treatment should the patient be warned about?",
                    f"{d.drug.name} can cause {d.adverse}.", [d.drug.id]),
        "check": ("What must be checked before the first dose of the treatment?",
                  f"{d.check[0].upper() + d.check[1:]} must be checked before the first dose of {d.drug.name}.",
                  [d.drug.id]),
        "test": (f"What does {d.test.name} measure?", f"{d.test.name} measures {d.analyte} in {d.specimen}.",
                 [d.test.id]),
        "sign": (f"What does {d.sign.name} indicate?",
                 f"{d.sign.name} indicates {d.organ} involvement, as in {d.disease.name}.", [d.sign.id]),
        "organ": ("Which organ is primarily affected?", f"{d.disease.name} primarily affects the {d.organ}.",
                  [d.disease.id]),
    }


def vignette(rng: random.Random, world: list[Disease], d: Disease, vid: str) -> dict:
    """One patient with disease ``d``: the scenario shows the findings, never the disease name."""
    age, sex = rng.randint(19, 84), rng.choice(["woman", "man"])
    s1, s2 = ORGANS[d.organ]
    duration = rng.choice(["two days", "five days", "a week", "ten days", "three weeks", "two months"])
    history = rng.choice(HISTORY)
    if sex == "man":
        history = history.replace("She ", "He ")
    elif history.startswith("He "):
        history = "She " + history[3:]
    others = [o for o in world if o is not d]
    distractor = rng.choice(others).test if others and rng.random() < 0.5 else None
    tests = f"The {d.test.name} is positive" + (f"; the {distractor.name} is negative." if distractor else ".")
    scenario = (f"A {age}-year-old {sex} presents with {duration} of {s1} and {s2}. {history} On examination "
                f"there is {d.sign.name}. {tests}")
    bank = _questions(d)
    kinds = [k for k in bank if k != "diagnosis"]
    rng.shuffle(kinds)
    n = rng.randint(2, 5)
    chosen = (["diagnosis"] + kinds[: n - 1]) if rng.random() < 0.7 else kinds[:n]
    qa = [bank[k] for k in chosen]
    summary = f"A {age}-year-old {sex} with {duration} of {s1} and {s2}, {d.sign.name} and a positive {d.test.name}."
    texts = [scenario, summary, *(a for _, a, _ in qa)]
    words = [e.word for e in (d.disease, d.drug, d.test, d.sign, *([distractor] if distractor else []))]
    return {
        "id": vid,
        "scenario": scenario,
        "questions": [q for q, _, _ in qa],
        "summary": summary,
        "answers": [a for _, a, _ in qa],
        "gold_docs": [g for _, _, g in qa],
        "new_words": sorted(w for w in set(words) if any(w in t for t in texts)),
    }


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_world(out_dir: str | Path, seed: int = 0, n_train: int = 200, n_val: int = 40, n_test: int = 40,
                n_diseases: int = 10, tokenizer=None) -> dict[str, Path]:
    """Write the knowledge base, the three splits, the prompt/completion file and the words list."""
    from qwenft.data.decompose import to_training_examples

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(seed, n_diseases, tokenizer)
    ents = entities(world)
    rng = random.Random(f"{seed}-vignettes")
    paths = {"kb": out / "kb.jsonl", "words": out / "words.txt"}
    paths["kb"].write_text(_jsonl([{"id": e.id, "title": e.name, "text": e.text} for e in ents]), encoding="utf-8")
    paths["words"].write_text("".join(f"{e.word}\t{e.gloss}\n" for e in ents), encoding="utf-8")
    splits: dict[str, list[dict]] = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        splits[split] = [vignette(rng, world, world[i % len(world)] if i < len(world) else rng.choice(world),
                                  f"{split}-{i}") for i in range(n)]
        paths[split] = out / f"{split}.jsonl"
        paths[split].write_text(_jsonl(splits[split]), encoding="utf-8")
    examples = [ex for rec in splits["train"] for ex in to_training_examples(rec, "decomposition")]
    examples += [{"prompt": f"What is {e.name}?", "completion": e.text} for e in ents]
    paths["train_prompt_completion"] = out / "train_prompt_completion.jsonl"
    paths["train_prompt_completion"].write_text(_jsonl(examples), encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-val", type=int, default=40)
    parser.add_argument("--n-test", type=int, default=40)
    parser.add_argument("--n-diseases", type=int, default=10, help="x 4 entities (disease, drug, test, sign)")
    args = parser.parse_args(argv)
    if min(args.n_train, args.n_val, args.n_test) < 0 or args.n_diseases < 1:
        parser.error("split sizes must be >= 0 and --n-diseases >= 1")
    for name, path in write_world(args.out, args.seed, args.n_train, args.n_val, args.n_test,
                                  args.n_diseases).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
