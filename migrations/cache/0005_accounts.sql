-- PHM Workstation local cache, schema version 5: account administration.
-- - The administrator role (manages accounts, sees no patient data) joins the roles an
--   account may have. SQLite cannot change a CHECK constraint in place, so the table is
--   rebuilt with its rows, in the same column order (imports copy it column by column).
-- - must_change_passphrase: set by an administrator's passphrase reset (and for an account
--   created with a first passphrase); the user must choose a new one at the next sign-in.
-- failed_count counts consecutive failed sign-ins; only a successful sign-in or an
-- administrator's unlock or reset clears it, never a lockout (access::LockoutPolicy).

CREATE TABLE accounts_v5 (
    username               TEXT PRIMARY KEY,
    display_name           TEXT NOT NULL,
    role                   TEXT NOT NULL CHECK (role IN ('care_manager','clinician','quality_analyst','privacy_officer','administrator')),
    phc                    TEXT NOT NULL,    -- Argon2id PHC string
    failed_count           INTEGER NOT NULL DEFAULT 0,
    locked_until           INTEGER,          -- Unix ms
    disabled               INTEGER NOT NULL DEFAULT 0,
    created_at             TEXT NOT NULL,
    last_login_at          TEXT,
    practitioner_id        TEXT,
    must_change_passphrase INTEGER NOT NULL DEFAULT 0 CHECK (must_change_passphrase IN (0, 1))
);

INSERT INTO accounts_v5(username, display_name, role, phc, failed_count, locked_until,
                        disabled, created_at, last_login_at, practitioner_id)
SELECT username, display_name, role, phc, failed_count, locked_until,
       disabled, created_at, last_login_at, practitioner_id
FROM accounts;

DROP TABLE accounts;
ALTER TABLE accounts_v5 RENAME TO accounts;
