{#
    grain: one row per row of the price seeds that the marts were last built with

    Built after the marts, so while a build runs this table still holds the previous build's
    catalog, which int_usage_events_in_scope compares with the current one.
#}

-- depends_on: {{ ref('fct_usage_daily') }}

select * from {{ ref('int_price_catalog_rows') }}
