{{ config(severity='warn') }}
-- Expects no rows: at most the share set by var max_unpriced_share of metered events lack a
-- price. A row means prices are missing (a new model, a provider outside the catalog).
with

shares as (

    select
        count(*) as metered_events,
        sum(case when cost_source = 'unpriced' then 1 else 0 end) as unpriced_events
    from {{ ref('fct_usage_events') }}
    where is_metered

)

select *
from shares
where
    metered_events > 0
    and unpriced_events > {{ var('max_unpriced_share') }} * metered_events
