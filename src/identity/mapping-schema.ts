import type { Schema } from "../directory/migrations.js";

/**
 * The SQL schema of the self-service mappings (sql-user-mapping-store.ts), applied with the
 * directory's when the gateway's database opens (src/directory/migrations.ts has the rules: steps
 * are append-only, never edit a released one). Its version table and lock are the ones the first
 * PostgreSQL release used, so existing databases carry on where they are.
 */
export const MAPPING_SCHEMA: Schema = {
  name: "mapping",
  versionTable: "acsgw_schema_migrations",
  advisoryLock: 4_107_223_901,
  migrations: [
    {
      version: 1,
      name: "identity mappings with reservations and ownership history",
      statements: [
        `CREATE TABLE acsgw_identity_mapping (
        id bigserial PRIMARY KEY,
        -- the ACS resource (hash of its endpoint host): a caller maps to one identity per resource
        resource text NOT NULL,
        subject_key text NOT NULL,
        user_id text,
        -- reserved (no identity yet) -> pending (created and recorded) -> mapped; replaced: history
        state text NOT NULL CHECK (state IN ('reserved', 'pending', 'mapped', 'replaced')),
        reservation_id text NOT NULL,
        -- epoch ms until which a reservation without identity belongs to its creator
        lease_until bigint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        replaced_at timestamptz,
        CHECK ((state = 'reserved') = (user_id IS NULL))
      )`,
        // The arbiter of concurrent first calls: one live row per caller and resource.
        `CREATE UNIQUE INDEX acsgw_identity_mapping_live
        ON acsgw_identity_mapping (resource, subject_key) WHERE state <> 'replaced'`,
        // An identity belongs to one caller, ever (replaced rows included: the ownership history).
        `CREATE UNIQUE INDEX acsgw_identity_mapping_user
        ON acsgw_identity_mapping (resource, user_id) WHERE user_id IS NOT NULL`,
        `CREATE INDEX acsgw_identity_mapping_pending
        ON acsgw_identity_mapping (resource) WHERE state = 'pending'`,
        `CREATE INDEX acsgw_identity_mapping_owner
        ON acsgw_identity_mapping (resource, subject_key, user_id)`,
      ],
    },
  ],
};
