"""Reading audio: decoding and resampling, log-mel, the dataset and its preflight report, generated collections."""
