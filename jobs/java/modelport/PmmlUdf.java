package modelport;

import java.io.File;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.spark.SparkFiles;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF3;
import org.jpmml.evaluator.Evaluator;
import org.jpmml.evaluator.EvaluatorUtil;
import org.jpmml.evaluator.InputField;
import org.jpmml.evaluator.LoadingModelEvaluatorBuilder;

/**
 * PMML scored by JPMML-Evaluator inside the executor's JVM: no Python worker, no copy of the
 * rows out of the JVM.
 *
 * <p>Called as {@code modelport_pmml(file, outputs, struct(features...))}: {@code file} is the
 * name the driver gave {@code sparkContext.addFile} (resolved here with {@code SparkFiles.get},
 * so every executor reads its own copy), {@code outputs} the result fields to return, one per
 * line, in the order of the declared return struct (the driver reads their names off the PMML,
 * as formats/pmml.py does), each as {@code s:name} (returned as a string: a class label) or
 * {@code d:name} (a double). The features arrive as a struct whose field names are the PMML's
 * input names.
 *
 * <p>Missing values are handled as formats.pmml.JpmmlScorer handles them: a null and a NaN are
 * both PMML's missing value, left to the model's own missing value treatment. A row whose
 * first output comes back missing is an error, as it is there.
 */
public final class PmmlUdf implements UDF3<String, String, Row, Row> {
    private static final long serialVersionUID = 1L;

    /** One evaluator per model file and output list per JVM: loading parses the whole XML. */
    private static final Map<String, Scorer> SCORERS = new ConcurrentHashMap<>();

    @Override
    public Row call(String file, String outputs, Row features) throws Exception {
        Scorer scorer = SCORERS.computeIfAbsent(file + "\n" + outputs, key -> Scorer.load(file, outputs));
        return scorer.score(features);
    }

    /** Drops the cached evaluators (tests load several models in one JVM). */
    public static void clear() {
        SCORERS.clear();
    }

    static final class Scorer {
        private final Evaluator evaluator;
        private final List<InputField> inputs;
        private final String[] outputs;
        private final boolean[] text;
        // struct field index of each input, found on the first row (the schema is fixed per plan)
        private volatile int[] positions;

        private Scorer(Evaluator evaluator, String[] outputs) {
            this.evaluator = evaluator;
            this.inputs = new ArrayList<>(evaluator.getInputFields());
            this.outputs = new String[outputs.length];
            this.text = new boolean[outputs.length];
            for (int i = 0; i < outputs.length; i++) {
                if (!outputs[i].startsWith("s:") && !outputs[i].startsWith("d:")) {
                    throw new IllegalArgumentException("an output is s:name or d:name, got " + outputs[i]);
                }
                this.text[i] = outputs[i].startsWith("s:");
                this.outputs[i] = outputs[i].substring(2);
            }
        }

        static Scorer load(String file, String outputs) {
            File path = new File(file).isAbsolute() ? new File(file) : new File(SparkFiles.get(file));
            try {
                Evaluator evaluator = new LoadingModelEvaluatorBuilder().load(path).build();
                evaluator.verify();
                return new Scorer(evaluator, outputs.split("\n"));
            } catch (Exception exc) {
                throw new IllegalStateException("JPMML-Evaluator cannot load " + path.getName() + ": " + exc, exc);
            }
        }

        Row score(Row features) {
            int[] at = positions;
            if (at == null) {
                at = new int[inputs.size()];
                for (int i = 0; i < at.length; i++) {
                    String name = inputs.get(i).getName();
                    if (!Arrays.asList(features.schema().fieldNames()).contains(name)) {
                        throw new IllegalArgumentException("the features struct has no field " + name);
                    }
                    at[i] = features.fieldIndex(name);
                }
                positions = at;
            }
            Map<String, Object> arguments = new LinkedHashMap<>();
            for (int i = 0; i < at.length; i++) {
                InputField field = inputs.get(i);
                arguments.put(field.getName(), field.prepare(raw(features, at[i])));
            }
            Map<String, ?> results = evaluator.evaluate(arguments);
            Object[] values = new Object[outputs.length];
            for (int i = 0; i < outputs.length; i++) {
                Object value = EvaluatorUtil.decode(results.get(outputs[i]));
                if (value == null && i == 0) {
                    throw new IllegalArgumentException("JPMML-Evaluator could not score a row (" + outputs[i]
                        + " is missing): a missing value the pipeline does not impute, or a category it was "
                        + "not fitted on? row " + features);
                }
                values[i] = value == null ? null : text[i] ? value.toString() : toDouble(value);
            }
            return RowFactory.create(values);
        }

        private static Object raw(Row row, int i) {
            if (row.isNullAt(i)) {
                return null;
            }
            Object value = row.get(i);
            if (value instanceof Double && ((Double) value).isNaN()) {
                return null;
            }
            if (value instanceof Float && ((Float) value).isNaN()) {
                return null;
            }
            return value;
        }

        private static Double toDouble(Object value) {
            if (value instanceof Number) {
                return ((Number) value).doubleValue();
            }
            return Double.valueOf(value.toString());
        }
    }
}
