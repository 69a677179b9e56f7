{#
    grain: one row per billable event and usage key priced by the catalog price in force

    The price in force is the catalog's own price for the event's service tier when it has one,
    else the standard price; within it, each key takes the highest long-context tier whose
    threshold the request's input tokens exceed (the whole request moves to that tier).
    A key's leaf quantity follows genai-prices: its usage minus the usage of the more specific
    keys that the same price lists (cached input is taken out of input, and so on).

    Memory: each step joins the events with a relation no larger than the price catalog, and
    only requests above a long-context threshold are grouped, so the events stream through the
    joins. Window functions over every event's candidate lines ran out of memory at 10,000,000
    events on DuckDB.
#}

{%- set quantities = usage_key_quantities('applied_lines') %}

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

price_versions as (

    -- The columns that the lines of one price version share.
    select distinct
        price_version_id,
        price_provider_id,
        catalog_model_id,
        service_tier,
        effective_from,
        effective_to,
        day_second_from,
        day_second_to
    from token_prices

),

events_with_versions as (

    -- genai-prices applies tier variants only to a provider's own models, not to models it
    -- borrows from another provider's list (Azure from OpenAI, say). An event with no version
    -- in force keeps a null version and gets no lines.
    select
        events.event_id,
        events.input_tokens,
        events.cached_input_tokens,
        events.cache_write_tokens,
        events.output_tokens,
        events.reasoning_tokens,
        events.usage_details,
        coalesce(
            tier_versions.price_version_id, standard_versions.price_version_id
        ) as price_version_id
    from events
    left join price_versions as tier_versions
        on
            events.price_provider_id = tier_versions.price_provider_id
            and events.catalog_model_id = tier_versions.catalog_model_id
            and events.service_tier = tier_versions.service_tier
            and events.service_tier != 'standard'
            and events.catalog_provider_id = events.price_provider_id
            and events.created_at >= tier_versions.effective_from
            and events.created_at < tier_versions.effective_to
            and {{ seconds_since_midnight('events.created_at') }} >= tier_versions.day_second_from
            and {{ seconds_since_midnight('events.created_at') }} < tier_versions.day_second_to
    left join price_versions as standard_versions
        on
            events.price_provider_id = standard_versions.price_provider_id
            and events.catalog_model_id = standard_versions.catalog_model_id
            and standard_versions.service_tier = 'standard'
            and events.created_at >= standard_versions.effective_from
            and events.created_at < standard_versions.effective_to
            and {{ seconds_since_midnight('events.created_at') }} >= standard_versions.day_second_from
            and {{ seconds_since_midnight('events.created_at') }} < standard_versions.day_second_to

),

applied_tiers as (

    -- Only requests above a threshold have a row here: for each of their keys, the highest
    -- threshold that their input tokens exceed.
    select
        events_with_versions.event_id,
        token_prices.usage_key,
        max(token_prices.above_input_tokens) as above_input_tokens
    from events_with_versions
    inner join token_prices
        on
            events_with_versions.price_version_id = token_prices.price_version_id
            and events_with_versions.input_tokens > token_prices.above_input_tokens
    group by
        events_with_versions.event_id,
        token_prices.usage_key

),

applied_lines as (

    -- A key's base line (no threshold) applies when no tier does, else the applied tier's line.
    select
        events_with_versions.*,
        token_prices.price_line_id,
        token_prices.service_tier as price_service_tier,
        token_prices.usage_key,
        token_prices.price_key,
        token_prices.per_units,
        token_prices.above_input_tokens,
        token_prices.unit_price,
        token_prices.price_key_set
    from events_with_versions
    inner join token_prices
        on events_with_versions.price_version_id = token_prices.price_version_id
    left join applied_tiers
        on
            events_with_versions.event_id = applied_tiers.event_id
            and token_prices.usage_key = applied_tiers.usage_key
    where
        coalesce(token_prices.above_input_tokens, -1)
        = coalesce(applied_tiers.above_input_tokens, -1)

),

leaf_coefficients as (

    -- One row per price key set and key, with one coefficient column per counted key, so a
    -- line's leaf quantity is a sum over its event's own columns.
    select
        {%- for counted_usage_key in quantities %}
            sum(
                case when counted_usage_key = '{{ counted_usage_key }}' then coefficient else 0 end
            ) as {{ counted_usage_key }}_coefficient,
        {%- endfor %}
        price_key_set,
        usage_key
    from leaf_terms
    group by
        price_key_set,
        usage_key

),

lines_with_leaf_quantities as (

    -- A count the event does not report counts as 0.
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
        {%- for counted_usage_key, quantity in quantities.items() %}
            leaf_coefficients.{{ counted_usage_key }}_coefficient
            * coalesce({{ quantity }}, 0){{ " +" if not loop.last }}
        {%- endfor %} as leaf_quantity
    from applied_lines
    inner join leaf_coefficients
        on
            applied_lines.price_key_set = leaf_coefficients.price_key_set
            and applied_lines.usage_key = leaf_coefficients.usage_key

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
