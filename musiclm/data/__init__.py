"""Training data: the synthesized corpus, the user's catalog, manifests, captions, analysis and token shards.

Data flow: `synth`/`catalog` → audio clips + `manifest.jsonl` (one clip per line, captions and structured
fields) → `musiclm data tokenize` → token shards (`shards.TokenShards`) that the LM trains from.
"""
