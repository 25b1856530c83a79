"""Package modules written from notebook cells, so a model is taught once, in view.

Code cells starting ``# @save`` (as in *Dive into Deep Learning*; ``# @save <module path>``
in a notebook feeding several modules) are copied in order into the module. ``--check``
fails when a module and its notebook differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: Marker on the first line of a cell that belongs to the package.
MARKER = "# @save"
ROOT = Path(__file__).resolve().parent.parent

#: module (relative to the repository) -> (notebook, module docstring)
SAVED = {
    "recsys_utils/two_tower.py": (
        "notebooks/04_tfrs_retrieval.ipynb",
        "The two-tower retrieval model of notebook 04: the item and query towers,\n"
        "the ``tfrs.Model`` with its ``compute_loss``, and how each variant is built and trained."),
    "recsys_utils/dcn_ranker.py": (
        "notebooks/05_tfrs_ranking.ipynb",
        "The deep & cross network ranker of notebook 05 (a ``tfrs.Model`` with its\n"
        "``compute_loss``) and how it is built and trained."),
    "recsys_utils/sentence_pooling.py": (
        "notebooks/02_text_encoding.ipynb",
        "Sentence vectors from a BERT's token states (notebook 02): masked mean pooling\n"
        "and L2 normalisation, the function ``recsys_utils.text.TextEncoder`` calls."),
    "recsys_utils/contrastive.py": (
        "notebooks/03_multimodal_fusion.ipynb",
        "The CLIP-style contrastive loss of notebook 03: symmetric in-batch cross-entropy\n"
        "between paired image and text vectors (the image encoder's contrastive objective)."),
    "recsys_utils/gated_fusion.py": (
        "notebooks/03_multimodal_fusion.ipynb",
        "The gated fusion of notebook 03: a softmax gate weighs an item's projected text,\n"
        "image and attribute vectors, over the modalities the item has, and sums them."),
    "recsys_utils/search_models.py": (
        "notebooks/07_product_search.ipynb",
        "The product-search models of notebook 07: the hybrids (reciprocal rank fusion, score\n"
        "interpolation, ``HybridSearcher``) and the TFRS two-tower search model (``SearchModel``\n"
        "with its ``compute_loss``, trained by ``train_search_model``), behind the ``Searcher``\n"
        "interface of :mod:`recsys_utils.searcher`."),
}


def saved_cells(notebook: Path, module: str | None = None) -> list[str]:
    """Sources of ``notebook``'s code cells that start with :data:`MARKER`; with ``module``,
    those naming it, or naming no module when the notebook feeds ``module`` alone."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    only = module is None or [m for m, (n, _) in SAVED.items()
                              if (ROOT / n).resolve() == Path(notebook).resolve()] == [module]
    saved = []
    for first, _, body in ("".join(c["source"]).partition("\n") for c in cells
                           if c["cell_type"] == "code"):
        target = first[len(MARKER):].strip()
        if first.startswith(MARKER) and (module in (None, target) or (not target and only)):
            saved.append(body.strip("\n"))
    return saved


def render(module: str) -> str:
    """The text ``module`` must have: a header, then the notebook's saved cells."""
    notebook, doc = SAVED[module]
    cells = saved_cells(ROOT / notebook, module)
    if not cells:
        raise ValueError(f"{notebook} has no code cell starting with {MARKER!r}")
    header = (f'"""{doc}\n\nGenerated from ``{notebook}`` (its cells marked ``{MARKER}``):\n'
              f'edit the notebook, then run ``python -m recsys_utils.notebook_code``.\n"""\n')
    return header + "\n\n\n".join(cells) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail if a module differs from its notebook instead of writing it")
    args = parser.parse_args(argv)
    stale = []
    for module in SAVED:
        text, path = render(module), ROOT / module
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(module)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {module} from {SAVED[module][0]}")
    if stale:
        print(f"out of date with their notebooks: {', '.join(stale)}; "
              f"run `python -m recsys_utils.notebook_code`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
