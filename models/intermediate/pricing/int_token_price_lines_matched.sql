{#
    grain: one row per billable event and usage key priced by the catalog price in force

    The price in force is the catalog's own price for the event's service tier when it has one,
    else the standard price; within it, each key takes the highest long-context tier whose
    threshold the request's input tokens exceed (the whole request moves to that tier).
    A key's leaf quantity follows genai-prices: its usage minus the usage of the more specific
    keys that the same price lists (cached input is taken out of input, and so on).

    NOTE: candidate_lines holds every price line of each event's model before the window
    functions pick one, so a full refresh needs memory in proportion to events times lines. At
    10,000,000 events DuckDB ran out of its 18.8 GiB limit here on a 24 GiB machine.
#}

with

events as (

    select * from {{ ref('int_usage_events_in_scope') }}
    where
        catalog_model_id is not null
        and input_tokens is not null

),

token_prices as (

    select * from {{ ref('genai_token_prices') }}

),

leaf_terms as (

    select * from {{ ref('genai_price_leaf_terms') }}

),

quantities as (

    select * from {{ ref('int_usage_quantities_unpivoted') }}

),

candidate_lines as (

    select
        events.event_id,
        events.service_tier as requested_service_tier,
        events.input_tokens as request_input_tokens,
        token_prices.price_line_id,
        token_prices.price_version_id,
        token_prices.service_tier as price_service_tier,
        token_prices.usage_key,
        token_prices.price_key,
        token_prices.per_units,
        token_prices.above_input_tokens,
        token_prices.unit_price,
        token_prices.price_key_set
    from events
    inner join token_prices
        on
            events.price_provider_id = token_prices.price_provider_id
            and events.catalog_model_id = token_prices.catalog_model_id
            and events.created_at >= token_prices.effective_from
            and events.created_at < token_prices.effective_to
            and {{ seconds_since_midnight('events.created_at') }} >= token_prices.day_second_from
            and {{ seconds_since_midnight('events.created_at') }} < token_prices.day_second_to
            -- genai-prices applies tier variants only to a provider's own models, not to
            -- models it borrows from another provider's list (Azure from OpenAI, say).
            and (
                token_prices.service_tier = 'standard'
                or (
                    events.service_tier = token_prices.service_tier
                    and events.catalog_provider_id = events.price_provider_id
                )
            )

),

versions_ranked as (

    select
        *,
        dense_rank() over (
            partition by event_id
            order by case when price_service_tier = requested_service_tier then 0 else 1 end
        ) as version_rank
    from candidate_lines

),

tiers_ranked as (

    select
        *,
        row_number() over (
            partition by event_id, usage_key
            order by coalesce(above_input_tokens, -1) desc
        ) as tier_rank
    from versions_ranked
    where
        version_rank = 1
        and (above_input_tokens is null or request_input_tokens > above_input_tokens)

),

applied_lines as (

    select * from tiers_ranked
    where tier_rank = 1

),

lines_with_leaf_quantities as (

    -- One group per applied line, whose key (event_id, usage_key) is unique, so the other columns
    -- only ride along. Joining a grouped CTE back to applied_lines instead led PostgreSQL 15 into
    -- a nested loop that grouped again for every line, because it cannot estimate how many rows
    -- window filters keep. That took 36 s instead of under 1 s on the tests' 3,000-event sample.
    select
        applied_lines.event_id,
        applied_lines.price_line_id,
        applied_lines.price_version_id,
        applied_lines.price_service_tier,
        applied_lines.usage_key,
        applied_lines.price_key,
        applied_lines.above_input_tokens,
        applied_lines.unit_price,
        applied_lines.per_units,
        sum(leaf_terms.coefficient * coalesce(quantities.quantity, 0)) as leaf_quantity
    from applied_lines
    inner join leaf_terms
        on
            applied_lines.price_key_set = leaf_terms.price_key_set
            and applied_lines.usage_key = leaf_terms.usage_key
    left join quantities
        on
            applied_lines.event_id = quantities.event_id
            and leaf_terms.counted_usage_key = quantities.usage_key
    group by
        applied_lines.event_id,
        applied_lines.price_line_id,
        applied_lines.price_version_id,
        applied_lines.price_service_tier,
        applied_lines.usage_key,
        applied_lines.price_key,
        applied_lines.above_input_tokens,
        applied_lines.unit_price,
        applied_lines.per_units

),

priced_lines as (

    select
        event_id,
        price_line_id,
        price_version_id,
        price_service_tier,
        usage_key,
        price_key,
        above_input_tokens,
        unit_price,
        per_units,
        leaf_quantity,
        leaf_quantity < 0 as has_negative_quantity,
        -- Exact: a decimal price times a whole quantity times an exact power of ten. The scale
        -- is the sum of the price's 18 and the factor's 6 digits. The cast states the type that
        -- DuckDB derives, because PostgreSQL would leave the numeric unconstrained.
        cast(
            unit_price
            * leaf_quantity
            * {{ per_unit_factor('per_units') }}
            as decimal(38, 24)
        ) as line_cost_usd
    from lines_with_leaf_quantities

)

select * from priced_lines
