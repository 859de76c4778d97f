"""Released checkpoints in, dfdet checkpoints out: import the paper's and GenD's models, share via the Hub.

paper.py reads the paper's Lightning + peft checkpoint (safe unpickling only), gend.py GenD's
safetensors; both hand an `ImportedModel` to imported.py, which writes a dfdet checkpoint folder
plus the full vision backbone. remote.py is the only module that talks to huggingface_hub.
"""
