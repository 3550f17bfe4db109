"""Datasets: checksummed sources, the npz files the fetch stage writes, the LightningDataModule."""
