-- API tokens expire: new tokens get a lifetime (IOC_API_TOKEN_DAYS, or ioc token create
-- --expires); tokens made before this migration keep none until rotated (ioc token rotate).
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS expires_at timestamptz;
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS rotated_from bigint REFERENCES api_tokens (id);
