"""Build the caption tokenizer: a SentencePiece unigram model trained on captions.

    .venv/bin/python tokenizer/build_tokenizer.py [--manifest data/synth/manifest.jsonl ...] [--vocab-size 1000]

The training text needs no rendered audio: captions are drawn from the same field distribution as the
synthesized corpus (sources, ensembles, keys, tempi, meters, moods → musiclm.data.captions.make_caption),
plus every caption of the manifests given, plus a list of everyday music words (genres, instruments, moods)
that users type but the corpus never says. byte_fallback keeps any other text encodable.
Deterministic: fixed seed, one thread, no sampling of the input; two builds give identical bytes.

Ids are fixed: 0 <pad>, 1 <unk>, 2 <s>, 3 </s>. Text is NFKC-normalised and case-folded ("Piano" = "piano").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm

from musiclm.data.captions import MOODS, TEMPO_WORDS, key_name, make_caption, tempo_word
from musiclm.data.manifest import read_manifest
from musiclm.data.sources import GM, MONO_INSTRUMENTS, POLY_ENSEMBLES, SOURCES

HERE = Path(__file__).resolve().parent
METERS = ("4/4", "3/4", "2/4", "2/2", "4/2", "6/8", "9/8", "12/8", "3/8", "3/2", "6/4", "5/4", "7/8")
EXTRA_WORDS = """
jazz rock pop blues folk country classical electronic ambient techno house trance dubstep hip hop rap funk
soul reggae metal punk disco orchestral cinematic soundtrack lofi lo-fi chill chillout lounge new age
world latin salsa bossa nova tango flamenco celtic irish scottish medieval baroque romantic minimal
synth synthesizer pad bass bassline drums drum kit percussion beat groove kick snare hi-hat cymbal
acoustic electric guitar piano keys organ strings violin cello orchestra choir vocals voice singing
saxophone trumpet flute clarinet harp marimba xylophone bells arpeggio chords melody riff solo duet trio
happy sad calm relaxing energetic upbeat dark bright epic dramatic peaceful dreamy nostalgic romantic
mysterious spooky tense hopeful uplifting melancholic joyful aggressive gentle soft loud quiet warm
intro outro loop background music song track tune piece with and in the a of for on at by slow fast
""".split()


def synthetic_captions(n: int, seed: int) -> list[str]:
    """Captions over the synth corpus's field space (every key, ensemble, meter, source), seeded."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        src = SOURCES[i % len(SOURCES)]
        mode = rng.choice(("major", "minor"))
        bpm = float(rng.randint(40, 220))
        tw = tempo_word(bpm)
        dyn = rng.choice(("soft", "moderate", "loud"))
        if rng.random() < 0.4:
            program = rng.choice(MONO_INSTRUMENTS)
            ensemble, names = f"solo {GM[program]}", [GM[program]]
        else:
            ensemble, programs = rng.choice(POLY_ENSEMBLES)
            names = list(dict.fromkeys(GM[p] for p in programs))
        speed = "slow" if bpm < 92 else "fast" if bpm >= 120 else "mid"
        pool = MOODS[(mode, speed, "loud" if dyn == "loud" else "soft")]
        key = key_name(rng.randrange(12), mode)
        fields = {
            "composer": src.composer,
            "era": src.era,
            "genre": src.genre,
            "key": key,
            "mode": mode,
            "bpm": bpm,
            "tempo_word": tw,
            "meter": rng.choice(METERS),
            "instruments": names,
            "ensemble": ensemble,
            "density": rng.choice(("sparse", "moderate", "dense")),
            "dynamics": dyn,
            "mood": rng.sample(pool, 2),
        }
        out.append(make_caption(fields, rng.randrange(2**31)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", action="append", default=[], help="add the captions of this manifest")
    p.add_argument("--vocab-size", type=int, default=1000)
    p.add_argument("--captions", type=int, default=30000, help="synthetic captions to train on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "captions.model"))
    args = p.parse_args(argv)

    lines = synthetic_captions(args.captions, args.seed)
    for m in args.manifest:
        lines += sorted(r["caption"] for r in read_manifest(m))
    lines += EXTRA_WORDS * 5  # each word a few times, so common words become single pieces
    lines += [" ".join(w for _, _, syn in TEMPO_WORDS for w in syn)] * 5
    lines += [" ".join(GM.values())] * 5

    model = Path(args.out).resolve()
    model.parent.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(args.seed)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the model records its prefix: a fixed relative one keeps builds byte-identical
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines),
                model_prefix="captions",
                vocab_size=args.vocab_size,
                model_type="unigram",
                character_coverage=1.0,
                byte_fallback=True,
                normalization_rule_name="nmt_nfkc_cf",
                pad_id=0,
                unk_id=1,
                bos_id=2,
                eos_id=3,
                num_threads=1,
                shuffle_input_sentence=False,
                input_sentence_size=0,
                split_digits=False,
                minloglevel=2,
            )
        finally:
            os.chdir(cwd)
        shutil.move(os.path.join(tmp, "captions.model"), model)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    example = "a slow, melancholic baroque chorale in D minor played by a string ensemble, 60 BPM, 4/4"
    print(
        f"{model}: vocab {sp.get_piece_size()}, {len(lines)} training lines, "
        f"sha256 {hashlib.sha256(model.read_bytes()).hexdigest()[:16]}"
    )
    print(f"  {example!r} -> {sp.encode(example, out_type=str)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
