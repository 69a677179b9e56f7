{#
    Seed loading on Spark. dbt-spark 1.11.0's session method binds seed values by formatting them
    into the SQL text: a null becomes the string 'None', quotes inside a string are not escaped,
    and numbers pass through a float. These overrides write each value as an escaped string
    literal cast to the column's type, so nulls stay null, quotes survive and decimals stay exact.
    Every seed of this project sets column_types for all its columns, so dbt reads every value as
    text.
#}

{# The column type of a seed column on Spark, where varchar needs a length and string does not. #}
{% macro spark_seed_column_type(model, agate_table, column_index) -%}
    {%- set column_name = agate_table.column_names[column_index] -%}
    {%- set declared_type = model['config'].get('column_types', {}).get(column_name) -%}
    {%- set column_type = declared_type or adapter.convert_type(agate_table, column_index) -%}
    {{- 'string' if column_type | trim | lower == 'varchar' else column_type -}}
{%- endmacro %}

{# A Spark SQL string literal of a seed value with backslashes and quotes escaped, or null. #}
{% macro spark_seed_literal(value) -%}
    {%- if value is none -%}
        null
    {%- else -%}
        '{{ (value | string).replace("\\", "\\\\").replace("'", "\\'") }}'
    {%- endif -%}
{%- endmacro %}

{% macro spark__create_csv_table(model, agate_table) %}
    {%- set quote_seed_column = model['config'].get('quote_columns', None) -%}

    {% set sql %}
        create table {{ this.render() }} (
            {%- for column_name in agate_table.column_names %}
                {{ adapter.quote_seed_column(column_name | string, quote_seed_column) }}
                {{ spark_seed_column_type(model, agate_table, loop.index0) }}
                {%- if not loop.last %},{% endif %}
            {%- endfor %}
        )
        {{ file_format_clause() }}
        {{ partition_cols(label="partitioned by") }}
        {{ clustered_cols(label="clustered by") }}
        {{ location_clause() }}
        {{ comment_clause() }}
    {% endset %}

    {% call statement('_') -%}
        {{ sql }}
    {%- endcall %}

    {{ return(sql) }}
{% endmacro %}

{% macro spark__load_csv_rows(model, agate_table) %}
    {%- set column_types = [] -%}
    {%- for column_name in agate_table.column_names -%}
        {%- do column_types.append(spark_seed_column_type(model, agate_table, loop.index0)) -%}
    {%- endfor -%}

    {%- set statements = [] -%}
    {%- for chunk in agate_table.rows | batch(get_batch_size()) -%}
        {%- set sql -%}
            insert into {{ this.render() }} values
            {%- for row in chunk %}
                (
                    {%- for value in row -%}
                        cast({{ spark_seed_literal(value) }} as {{ column_types[loop.index0] }})
                        {%- if not loop.last %}, {% endif -%}
                    {%- endfor -%}
                ){{ ',' if not loop.last }}
            {%- endfor %}
        {%- endset -%}

        {%- do adapter.add_query(sql, abridge_sql_log=True) -%}

        {%- if loop.first -%}
            {%- do statements.append(sql) -%}
        {%- endif -%}
    {%- endfor -%}

    {#- The first statement is what dbt writes to the seed's compiled file. -#}
    {{ return(statements[0] if statements else '') }}
{% endmacro %}
