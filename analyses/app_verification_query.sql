-- The app's own check of recorded usage: the latest 20 calls with tokens, units and cost.
select
    created_at,
    provider,
    model,
    tool_name,
    operation,
    input_tokens,
    output_tokens,
    units,
    unit_type,
    cost_usd
from {{ ref('token_usage') }}
order by created_at desc
limit 20
