{#
    grain: one row per billable event, with its computed cost and how it was reached

    A model listed in the unit price seed is billed per unit (seconds of video, images); any
    other catalog model is billed per token, and the `units` of a token-priced call are
    informational only. A missing price gives a null cost with a reason, never 0.
#}

with

events as (

    select * from {{ ref('int_usage_events_in_scope') }}

),

price_lines as (

    select * from {{ ref('int_token_price_lines_matched') }}

),

unit_prices as (

    select * from {{ ref('unit_prices') }}

),

price_rules as (

    select * from {{ ref('price_rules') }}

),

token_costs as (

    select
        event_id,
        min(price_version_id) as token_price_version_id,
        min(price_service_tier) as price_service_tier,
        max(above_input_tokens) as price_tier_above_input_tokens,
        count(*) as price_line_count,
        sum(case when line_cost_usd is null then 1 else 0 end) as unsupported_line_count,
        sum(case when has_negative_quantity then 1 else 0 end) as negative_line_count,
        sum(line_cost_usd) as token_cost_usd
    from price_lines
    group by event_id

),

unit_priced_models as (

    select distinct
        provider,
        model_name
    from unit_prices

),

unit_price_matches as (

    select
        events.event_id,
        {{ dbt.concat([
            "unit_prices.provider", "'/'", "unit_prices.model_name", "'/'", "unit_prices.unit_type",
            "'/'", "unit_prices.audio", "'/'", "cast(unit_prices.effective_from as " ~ dbt.type_string() ~ ")"
        ]) }} as unit_price_id,
        unit_prices.unit_price_usd
    from events
    inner join unit_prices
        on
            events.provider = unit_prices.provider
            and events.model_name = unit_prices.model_name
            and events.unit_type = unit_prices.unit_type
            and events.created_at >= unit_prices.effective_from
            and events.created_at < unit_prices.effective_to
            and (
                unit_prices.audio = 'any'
                or (events.has_audio is null and unit_prices.is_default_variant)
                or (events.has_audio and unit_prices.audio = 'with_audio')
                or (not events.has_audio and unit_prices.audio = 'without_audio')
            )

),

rule_matches as (

    select
        events.event_id,
        price_rules.price_multiplier
    from events
    inner join price_rules
        on
            events.catalog_provider_id = price_rules.provider
            and events.service_tier = price_rules.service_tier
            and events.created_at >= price_rules.effective_from
            and events.created_at < price_rules.effective_to

),

joined as (

    select
        events.*,
        token_costs.token_price_version_id,
        token_costs.price_service_tier,
        token_costs.price_tier_above_input_tokens,
        token_costs.price_line_count,
        token_costs.unsupported_line_count,
        token_costs.negative_line_count,
        token_costs.token_cost_usd,
        unit_price_matches.unit_price_id,
        unit_price_matches.unit_price_usd,
        rule_matches.price_multiplier as rule_price_multiplier,
        case
            when unit_priced_models.model_name is not null then 'units'
            when events.catalog_model_id is not null then 'tokens'
        end as pricing_basis,
        coalesce(
            events.service_tier <> 'standard' and token_costs.price_service_tier = 'standard',
            false
        ) as needs_tier_rule
    from events
    left join token_costs
        on events.event_id = token_costs.event_id
    left join unit_priced_models
        on
            events.provider = unit_priced_models.provider
            and events.model_name = unit_priced_models.model_name
    left join unit_price_matches
        on events.event_id = unit_price_matches.event_id
    left join rule_matches
        on events.event_id = rule_matches.event_id

),

metering as (

    select
        *,
        case
            when pricing_basis = 'units' then units is not null
            when pricing_basis = 'tokens' then input_tokens is not null
            else has_usage
        end as is_metered
    from joined

),

costed as (

    select
        *,
        -- The outer cast keeps decimal(38, 12) on PostgreSQL, which drops a numeric's precision
        -- from a case that has null branches.
        cast(
            case
                when not is_metered then null
                when pricing_basis = 'units'
                    then {{ usd('units * unit_price_usd') }}
                when
                    pricing_basis = 'tokens'
                    and price_line_count > 0
                    and unsupported_line_count = 0
                    and negative_line_count = 0
                    then case
                        when not needs_tier_rule then {{ usd('token_cost_usd') }}
                        -- Narrow both factors first, so the product's scale stays within 38 digits.
                        when rule_price_multiplier is not null
                            then {{ usd(
                                'cast(token_cost_usd as decimal(38, 18))'
                                ~ ' * cast(rule_price_multiplier as decimal(9, 6))'
                            ) }}
                    end
            end
            as decimal(38, 12)
        ) as computed_cost_usd
    from metering

),

classified as (

    select
        *,
        {{ usd('coalesce(computed_cost_usd, reported_cost_usd)') }} as cost_usd,
        -- The rule's multiplier only where it set the price, so the column never suggests a
        -- discount on top of the catalog's own batch price.
        case
            when needs_tier_rule and computed_cost_usd is not null
                then cast(rule_price_multiplier as decimal(9, 6))
        end as price_multiplier,
        case
            when computed_cost_usd is not null then 'computed'
            when reported_cost_usd is not null then 'reported'
            when not is_metered then 'unmetered'
            else 'unpriced'
        end as cost_source,
        case
            when computed_cost_usd is not null or not is_metered then null
            when model_resolution = 'unknown_provider' then 'unknown_provider'
            when pricing_basis is null and model_resolution = 'no_model' then 'no_model'
            when pricing_basis is null then 'unknown_model'
            when pricing_basis = 'units' then 'no_unit_price'
            when coalesce(price_line_count, 0) = 0 then 'no_price_at_date'
            when unsupported_line_count > 0 then 'unsupported_price_unit'
            when negative_line_count > 0 then 'usage_inconsistent_with_price'
            when needs_tier_rule then 'no_price_for_service_tier'
        end as unpriced_reason
    from costed

)

select * from classified
