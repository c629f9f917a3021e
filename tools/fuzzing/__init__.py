"""The seeded mutation fuzzer behind tools/fuzz.py: what users hand over to tcc (images, TIFFs, training options,
golden sets, bundles), made valid and small, mutated, and given to the `tcc` command that reads it.

    kinds/      the registry of kinds, one module each: `make_base` writes the valid inputs once, `make_case` one
                mutated case (image_formats.py and tiff_layout.py: the format-aware mutations)
    mutate.py   the mutations every kind shares (bytes, YAML / JSON trees, text)
    runner.py   one case = one `tcc` command in a forked child (crash-safe, killed at its timeout), judged
    session.py  N cases of a kind, each seeded by (SEED, case number); the summary and each failure's replay line
"""
