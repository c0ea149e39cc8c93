"""What drift and traces cost /score: images/s with each on and off."""
