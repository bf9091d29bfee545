"""Brazilian formats of the portal: ``30/11/2026 02:15:29 -03`` everywhere (day first, seconds
and the display zone's abbreviation, as the English formats; TIME_ZONE chooses the zone),
decimal comma and thousands dot."""

DATETIME_FORMAT = "d/m/Y H:i:s T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "d/m/Y"
SHORT_DATE_FORMAT = DATE_FORMAT
TIME_FORMAT = "H:i:s"
DECIMAL_SEPARATOR = ","
THOUSAND_SEPARATOR = "."
NUMBER_GROUPING = 3
FIRST_DAY_OF_WEEK = 0  # Sunday
