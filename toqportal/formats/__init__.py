"""Date and number formats per language (FORMAT_MODULE_PATH): one timestamp format with seconds
and the time zone, whatever page shows it."""
