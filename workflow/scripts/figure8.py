"""Rule figure8: validation PSNR during stage-1 training, per parametrization (paper Figure 8),
from the history stored in each stage-1 checkpoint: the mean over training seeds and their std."""
from ecdp.checkpoint import load_checkpoint
from ecdp.figures import save_figure, validation_curves
from ecdp.logs import logged


def main(*, models: list[str], names: list[str], output: str) -> None:
    histories = {}  # parametrization -> one validation history per training seed
    for name, path in zip(names, models):
        records = load_checkpoint(path)["meta"]["history"]["val"]
        histories.setdefault(name, []).append(records)
        print(name, path, [(r["step"], round(r["psnr"], 2)) for r in records])
    title = ("Figure 8: validation PSNR of probability-flow samples during stage-1 training\n"
             "(4 fixed validation patches, EMA weights, the released dopri5 solve; the paper "
             "plots LPIPS)")
    save_figure(validation_curves(histories, title=title), output)


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(models=list(snakemake.input.models), names=list(snakemake.params.names),
             output=snakemake.output[0])
