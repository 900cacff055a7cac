"""Building blocks shared by the text encoder (`musiclm.text`) and the music LM (`musiclm.lm`): pre-norm
transformer blocks, attention, the KV cache, and the check of a model directory's weights against its
config. Neither `text` nor `lm` imports the other's internals; both build on this layer."""
