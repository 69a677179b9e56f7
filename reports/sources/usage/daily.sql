-- grain: one row per UTC day, organization, provider, model, operation and tool
--
-- Every query of this source keeps the rows of one scope. The organization_id_literal variable
-- is the SQL literal null in a full build (every organization and the unattributed rows) and the
-- quoted organization id in an organization build, which then drops the unattributed rows too.
select
    usage_date,
    organization_id,
    is_unattributed,
    provider,
    model_name,
    operation,
    tool_name,
    event_count,
    computed_event_count,
    reported_event_count,
    unpriced_event_count,
    unmetered_event_count,
    is_cost_complete,
    input_tokens,
    cached_input_tokens,
    cache_write_tokens,
    output_tokens,
    reasoning_tokens,
    images,
    video_seconds,
    known_cost_usd,
    computed_cost_usd,
    reported_cost_usd
from marts.fct_usage_daily
where ${organization_id_literal} is null or organization_id = ${organization_id_literal}
