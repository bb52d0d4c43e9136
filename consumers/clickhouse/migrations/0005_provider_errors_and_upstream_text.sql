-- What the client received and what the upstream produced, and the provider's own error.
--
-- response_text, choices and tool_calls say what the client received (chunks written to it);
-- upstream_response_text and upstream_tool_calls what the proxy read from the upstream. They
-- differ only when the client went away mid-response. Rows loaded before this migration hold
-- the upstream's text in response_text, so the new columns default to those columns there.
--
-- provider_error_*: the type, code and message of the provider's JSON error body or in-stream
-- error event (OpenAI's {"error": {...}}, Anthropic's {"type": "error", "error": {...}}); empty
-- when the provider described no error. Rows loaded before this migration read empty.

ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS upstream_response_text String DEFAULT response_text CODEC(ZSTD(3)) AFTER response_text;
ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS upstream_tool_calls String DEFAULT tool_calls CODEC(ZSTD(3)) AFTER tool_calls;
ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS provider_error_type LowCardinality(String) AFTER error_message;
ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS provider_error_code LowCardinality(String) AFTER provider_error_type;
ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS provider_error_message String CODEC(ZSTD(3)) AFTER provider_error_code;
