"""About tab: what each method trains (from the registry, with exact counts per backbone) and why."""
from __future__ import annotations

import gradio as gr

from dfdet.learn import reported
from dfdet.methods import METHODS, PAPER_METHODS
from dfdet.viz import about
from dfdet.viz.startup import CODE_URL, PAPER_URL

from .common import Ctx, how_to_read

HOW = ("“trainable params” is what each method changes; the rest of CLIP stays frozen. Counts are exact and "
       "name the backbone they were counted on.")


def build(ctx: Ctx) -> gr.Tab:
    s = ctx.session
    with gr.Tab("About", id="about") as tab:
        how_to_read(HOW)
        gr.Markdown(f"### The methods (from the registry)\n{len(METHODS)} methods: the paper's {len(PAPER_METHODS)} "
                    f"({about.PAPER}; [paper]({PAPER_URL}), [code]({CODE_URL})) and the thesis's zero-shot and "
                    "text-guided ones. Each count is that method's trainable set, counted on the architecture "
                    "without loading weights.")
        # Counted on first visit: it builds ViT-L/14 on the meta device, which needs open_clip
        # (seconds to import), and the first page should not wait for that.
        table = gr.Markdown("Counting the trainable parameters of each method…", elem_id="about-table")
        gr.Markdown(about.METHODS_TEXT)
        paper = about.paper_results()
        gr.Markdown("### Reported numbers\nThese are **the sources' own** numbers, as printed there; nothing in "
                    "this table was measured by this app. The Learn tab sets them beside a run's measured ones.\n\n"
                    + reported.citation_markdown())
        if paper is not None:
            gr.Dataframe(paper, interactive=False, label="Reported (not measured here)", elem_id="about-reported")

    def counts():
        bank = s.store.bank
        loaded = {e.spec.name: e.trainable_params for e in bank.entries.values() if e.status == "ready"} if bank \
            else None
        return about.method_markdown("ViT-L-14", loaded, bank.clip.config.model if bank else None)

    tab.first_visit = (counts, [], [table])
    return tab
