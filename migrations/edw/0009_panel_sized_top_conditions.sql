-- 0009: (d) top conditions in a panel, panel-sized. 0008 joined mart.current_attribution,
-- which sorts the whole of edw.attribution (all persons) on every call; this version reads
-- one provider's rows through attribution_practitioner and keeps a person only when no
-- later attribution period exists (attribution_person_period), so the cost follows the
-- panel, not the population. Same result and signature.
CREATE OR REPLACE FUNCTION mart.q_panel_top_conditions(provider bigint, n integer)
RETURNS TABLE (code_system text, code text, display text, patients bigint)
LANGUAGE sql STABLE AS $$
    WITH panel AS (
        SELECT DISTINCT a.person_id
        FROM mart.dim_provider pr
        JOIN edw.attribution a ON a.practitioner_id = pr.practitioner_id
        WHERE pr.provider_key = provider
          AND NOT EXISTS (
              SELECT 1 FROM edw.attribution l
              WHERE l.person_id = a.person_id
                AND (l.period_end > a.period_end OR (l.period_end = a.period_end AND l.id > a.id))))
    SELECT c.code_system, c.code, min(c.display), count(DISTINCT sp.person_id)
    FROM panel
    JOIN edw.source_patient sp ON sp.person_id = panel.person_id
    JOIN edw.condition c ON c.source_patient_id = sp.id
    WHERE coalesce(c.clinical_status, 'active') IN ('active', 'recurrence', 'relapse')
    GROUP BY c.code_system, c.code
    ORDER BY 4 DESC, c.code_system, c.code
    LIMIT n
$$;
