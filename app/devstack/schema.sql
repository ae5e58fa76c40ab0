-- Demo schema for local runs and tests: issues and incidents with a few hundred rows.
CREATE TABLE IF NOT EXISTS issues (
    id          serial PRIMARY KEY,
    title       text NOT NULL,
    state       text NOT NULL CHECK (state IN ('open', 'closed')),
    labels      text[] NOT NULL DEFAULT '{}',
    body        text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    repo        text NOT NULL
);

CREATE TABLE IF NOT EXISTS incidents (
    id           serial PRIMARY KEY,
    issue_id     int REFERENCES issues (id),
    severity     text NOT NULL CHECK (severity IN ('sev1', 'sev2', 'sev3')),
    opened_at    timestamptz NOT NULL,
    resolved_at  timestamptz,
    cost         numeric(10, 2),
    payload      jsonb,
    ref          uuid
);

INSERT INTO issues (title, state, labels, body, created_at, updated_at, repo)
SELECT format('Issue %s: %s', n, (ARRAY['login fails', 'slow query', 'crash on start', 'typo in docs', 'flaky test'])[1 + n % 5]),
       CASE WHEN n % 3 = 0 THEN 'closed' ELSE 'open' END,
       ARRAY[(ARRAY['bug', 'docs', 'perf', 'security'])[1 + n % 4]],
       format('Body of issue %s; contains a semicolon; and the word DROP TABLE for parser tests', n),
       timestamptz '2026-01-01 00:00+00' + n * interval '7 hours',
       timestamptz '2026-01-01 00:00+00' + n * interval '9 hours',
       (ARRAY['acme/api', 'acme/web', 'acme/infra'])[1 + n % 3]
FROM generate_series(1, 300) AS n
WHERE NOT EXISTS (SELECT 1 FROM issues);

INSERT INTO incidents (issue_id, severity, opened_at, resolved_at, cost, payload, ref)
SELECT n * 2,
       (ARRAY['sev1', 'sev2', 'sev3'])[1 + n % 3],
       timestamptz '2026-02-01 00:00+00' + n * interval '1 day',
       CASE WHEN n % 4 = 0 THEN NULL ELSE timestamptz '2026-02-01 06:00+00' + n * interval '1 day' END,
       (n * 123.45)::numeric(10, 2),
       jsonb_build_object('pager', n % 2 = 0, 'teams', jsonb_build_array('sre', 'db')),
       md5(n::text)::uuid
FROM generate_series(1, 120) AS n
WHERE NOT EXISTS (SELECT 1 FROM incidents);
