"""English formats of the portal: ``2026-11-30 02:15:29 -03`` everywhere (seconds and the
display zone's abbreviation; TIME_ZONE chooses the zone)."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = DATE_FORMAT
TIME_FORMAT = "H:i:s"
