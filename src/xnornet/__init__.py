"""xnornet: XNOR-Net and BWN, trained, bit-packed and run on an XNOR-popcount CPU kernel."""

__version__ = "0.1.0"
