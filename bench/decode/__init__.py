"""Decoding photographs: full against reduced JPEG decoding, time per image and detection AUC."""
