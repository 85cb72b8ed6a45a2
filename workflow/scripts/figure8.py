"""Rule figure8: validation PSNR during stage-1 training, per parametrization (paper Figure 8),
from the history stored in each stage-1 checkpoint: the mean over training seeds and their std."""
from ecdp.checkpoint import load_checkpoint
from ecdp.figures import save_figure, validation_curves
from ecdp.logs import logged


def sampler_text(spec: dict | None) -> str:
    """How the validation samples were drawn (the recipe's ``validate_sample``)."""
    if not spec:
        return "the released dopri5 solve"
    options = ", ".join(f"{k} {v}" for k, v in spec.items() if k != "solver")
    return f"{spec.get('solver', 'dopri5')}" + (f" ({options})" if options else "")


def main(*, models: list[str], names: list[str], output: str) -> None:
    histories, samplers = {}, set()  # parametrization -> one history per training seed
    for name, path in zip(names, models):
        meta = load_checkpoint(path)["meta"]
        histories.setdefault(name, []).append(meta["history"]["val"])
        samplers.add(sampler_text(meta["train"].get("validate_sample")))
        print(name, path, [(r["step"], round(r["psnr"], 2)) for r in meta["history"]["val"]])
    title = ("Figure 8: validation PSNR of probability-flow samples during stage-1 training\n"
             f"(4 fixed validation patches, EMA weights, {'; '.join(sorted(samplers))}; the "
             f"paper plots LPIPS)")
    save_figure(validation_curves(histories, title=title), output)


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(models=list(snakemake.input.models), names=list(snakemake.params.names),
             output=snakemake.output[0])
