"""The VLA policy: config, model, processor, prompt, decoding, completion parsing, tiny model, conversion."""
