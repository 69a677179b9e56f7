-- Average cost per generated image and per second of video, by model. Only events with a known
-- cost count, so the averages are not pulled toward zero by missing prices.
select
    provider,
    model_name,
    unit_type,
    sum(units) as units,
    sum(cost_usd) as cost_usd,
    sum(cost_usd) / nullif(sum(units), 0) as cost_per_unit_usd
from {{ ref('fct_usage_events') }}
where
    unit_type in ('images', 'video_seconds')
    and cost_usd is not null
group by provider, model_name, unit_type
order by cost_usd desc
