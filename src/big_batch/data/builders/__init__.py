"""tfds dataset builders (array_record format) for data generated or shipped offline."""
