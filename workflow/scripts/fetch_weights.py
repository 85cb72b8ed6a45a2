"""Rule fetch_weights: AlexNet (LPIPS) and VGG19 (L_IQ) into resources/weights/, or record why not."""
from pathlib import Path

from ecdp.logs import logged
from ecdp.weights import fetch_weights


def main(*, output: str, allow_download: bool, timeout: float,
         sources: dict | None = None) -> None:
    status = fetch_weights(Path(output).parent, allow_download=allow_download, timeout=timeout,
                           sources=sources)
    for name, entry in status.items():
        print(f"{name}: {entry['status']} {entry.get('reason', entry.get('path', ''))}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(output=snakemake.output[0], allow_download=snakemake.params.allow_download,
             timeout=snakemake.params.timeout, sources=dict(snakemake.params.sources))
