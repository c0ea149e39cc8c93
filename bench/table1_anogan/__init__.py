"""Table 1's AnoGAN column, on a stratified Fashion-MNIST test subset."""
