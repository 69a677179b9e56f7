{#
    grain: one row per billable event that this build prices

    A full build (the first one, --full-refresh, or a warehouse without the previous build's
    price catalog) prices every event. An incremental build prices only the events that can have
    changed since the marts were built:
    - events whose latest snapshot was ingested within the lookback window (var lookback_days,
      measured on loaded_at, counted back from the newest loaded_at in the marts), so late events
      land in their day and late duplicates replace their billable event's row;
    - events that a price catalog change affects, whatever their age: the events of a changed or
      removed seed row's provider and model inside its effective window.
    previous_usage_date is the day the marts have the event under now, so fct_usage_daily also
    rebuilds a day that an event leaves.
#}

-- depends_on: {{ ref('int_price_catalog_rows') }}

{% set marts_schema = generate_schema_name('marts', none) -%}
{%- set events_mart = adapter.get_relation(this.database, marts_schema, 'fct_usage_events') -%}
{%- set applied_catalog = adapter.get_relation(this.database, this.schema, 'int_price_catalog_applied') -%}
{%- set is_incremental_scope = events_mart is not none
    and applied_catalog is not none
    and not flags.FULL_REFRESH -%}

with

usage_events as (

    select * from {{ ref('stg_usage__events') }}

),

{% if is_incremental_scope %}

priced_events as (

    select billable_key, usage_date, loaded_at from {{ events_mart }}

),

catalog_now as (

    select * from {{ ref('int_price_catalog_rows') }}

),

catalog_before as (

    select * from {{ applied_catalog }}

),

lookback as (

    select
        coalesce(
            {{ dbt.dateadd('day', -1 * (var('lookback_days') | int), 'max(loaded_at)') }},
            cast('1970-01-01 00:00:00' as timestamp)
        ) as loaded_from
    from priced_events

),

changed_catalog_rows as (

    -- Added or changed rows, then removed or changed rows: both windows need new prices.
    select * from catalog_now
    where row_hash not in (select catalog_before.row_hash from catalog_before)

    union all

    select * from catalog_before
    where row_hash not in (select catalog_now.row_hash from catalog_now)

),

recently_ingested as (

    select usage_events.billable_key
    from usage_events
    cross join lookback
    where usage_events.loaded_at >= lookback.loaded_from

),

repriced as (

    select usage_events.billable_key
    from usage_events
    inner join changed_catalog_rows
        on
            usage_events.created_at >= changed_catalog_rows.effective_from
            and usage_events.created_at < changed_catalog_rows.effective_to
            and (
                changed_catalog_rows.price_kind = 'leaf_term'
                or (
                    changed_catalog_rows.price_kind = 'token_price'
                    and usage_events.price_provider_id = changed_catalog_rows.provider_key
                    and usage_events.catalog_model_id = changed_catalog_rows.model_key
                )
                or (
                    changed_catalog_rows.price_kind = 'unit_price'
                    and usage_events.provider = changed_catalog_rows.provider_key
                    and usage_events.model_name = changed_catalog_rows.model_key
                )
                or (
                    changed_catalog_rows.price_kind = 'price_rule'
                    and usage_events.catalog_provider_id = changed_catalog_rows.provider_key
                )
            )

),

selected_keys as (

    select billable_key from recently_ingested
    union
    select billable_key from repriced

),

final as (

    select
        usage_events.*,
        priced_events.usage_date as previous_usage_date,
        'incremental' as scope_mode
    from usage_events
    inner join selected_keys
        on usage_events.billable_key = selected_keys.billable_key
    left join priced_events
        on usage_events.billable_key = priced_events.billable_key

)

{% else %}
-- noqa: disable=LT02

final as (

    select
        *,
        cast(null as date) as previous_usage_date,
        'all' as scope_mode
    from usage_events

)

-- noqa: enable=LT02
{% endif %}

select * from final
