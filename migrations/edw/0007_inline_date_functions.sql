-- 0007: text -> timestamptz/date casts are STABLE (they depend on TimeZone/DateStyle);
-- declared IMMUTABLE, PostgreSQL refused to inline these helpers and ran them as
-- separate SQL function calls (~1 ms per merged row). STABLE makes them inlinable.
ALTER FUNCTION edw.fhir_ts(text) STABLE;
ALTER FUNCTION edw.fhir_date(text) STABLE;
