"""The trainable side: quantizers, quantized layers, the networks and the one LightningModule."""
