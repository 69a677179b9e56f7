{#
    A hash of the columns that make up a model's grain. Each value is prefixed with its length,
    and null is marked apart from the empty string, so two different rows never share the text
    that is hashed, whatever characters the values contain.
#}
{% macro grain_key(columns) -%}
    {%- set parts = [] -%}
    {%- for column in columns -%}
        {%- set text = "cast(" ~ column ~ " as " ~ dbt.type_string() ~ ")" -%}
        {%- do parts.append("coalesce(" ~ dbt.concat([dbt.length(text), "':'", text]) ~ ", 'null')") -%}
    {%- endfor -%}
    {{ dbt.hash(dbt.concat(parts)) }}
{%- endmacro %}
